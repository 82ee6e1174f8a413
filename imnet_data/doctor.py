"""``imnet-data doctor``: one screen telling the user what this machine offers the pipeline, and how to get what
is missing. Every check is best-effort and never raises: a doctor that crashes on a broken install is useless.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

# GPUs with the NVJPG hardware JPEG decoder engine that DALI's nvJPEG uses (hw_decoder_load).
HW_DECODER_GPUS = ("A100", "A30", "A800", "H100", "H200", "H800", "H20", "GH200", "B100", "B200", "GB200")
PILLOW_SIMD_HINT = ("apt-get install -y libjpeg62-turbo-dev zlib1g-dev && pip uninstall -y pillow "
                    "&& pip install pillow-simd")


@dataclass(frozen=True)
class Check:
    """One line of the report: ``ok`` is True (fine), False (missing or broken) or None (information)."""

    name: str
    ok: bool | None
    detail: str
    hint: str = ""

    def as_dict(self) -> dict:
        """The check's fields, for ``--json``."""
        return asdict(self)


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    return None


def check_python() -> Check:
    """The running Python: version, machine and system (information only)."""
    return Check("python", True, f"{platform.python_version()} ({platform.machine()}, {platform.system()})")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}


def check_pil() -> Check:
    """Pillow or pillow-simd, and whether its JPEG codec is libjpeg-turbo (a plain libjpeg
    decodes slowly), with the CPU's SIMD flags."""
    try:
        import PIL
        from PIL import features
    except ImportError:
        return Check("PIL", False, "not installed", "pip install pillow (or pillow-simd)")
    simd = _dist_version("pillow-simd", "Pillow-SIMD")
    build = f"pillow-simd {simd}" if simd else f"pillow {PIL.__version__}"
    turbo = features.check_feature("libjpeg_turbo")
    simd_flags = sorted(_cpu_flags() & {"sse4_1", "sse4_2", "avx2", "avx512f"})
    detail = (f"{build}, libjpeg{'-turbo' if turbo else ''} {features.version('jpg')}, "
              f"CPU SIMD: {', '.join(simd_flags) or 'none seen'}")
    hint = "" if simd else f"faster resize/decode with pillow-simd: {PILLOW_SIMD_HINT}"
    return Check("PIL", bool(turbo), detail, hint if turbo else "PIL without libjpeg-turbo decodes slowly; " + hint)


def check_module(name: str, dist: str, hint: str) -> Check:
    """A plain importable dependency and its version."""
    try:
        importlib.import_module(name)
    except ImportError as e:
        return Check(dist, False, f"not importable ({e})", hint)
    return Check(dist, True, _dist_version(dist) or "installed")


def check_extra(name: str, dist: str, extra: str, purpose: str) -> Check:
    """An optional dependency (an extra): found or not, without importing it (``ray`` alone takes 0.5 s)."""
    if importlib.util.find_spec(name) is None:
        return Check(dist, None, f"not installed: no {purpose}", f"pip install 'imnet-data[{extra}]'")
    return Check(dist, True, f"{_dist_version(dist) or 'installed'} ({purpose})")


def _gpus() -> list[str]:
    """GPU names from nvidia-smi ([] when there is none or no driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def check_dali() -> list[Check]:
    """DALI's installed wheel, the GPUs nvidia-smi sees and whether they have the hardware JPEG decoder."""
    version = _dist_version("nvidia-dali-cuda130", "nvidia-dali-cuda120", "nvidia-dali-cuda110", "nvidia-dali")
    gpus = _gpus()
    if version is None:
        dali = Check("DALI", False, "not installed",
                     "pip install 'imnet-data[dali]' (CUDA 13; for CUDA 12: pip install nvidia-dali-cuda120)")
    else:
        dali = Check("DALI", True, f"{version} (CPU-only pipelines work without a GPU)")
    if not gpus:
        gpu = Check("GPU", None, "no NVIDIA GPU/driver found: loaders use the CPU paths (DALI CPU or torch)")
        return [dali, gpu]
    hw = [g for g in gpus if any(tag in g for tag in HW_DECODER_GPUS)]
    gpu = Check("GPU", True, f"{len(gpus)} x {gpus[0]}")
    nvjpg = Check("nvJPEG HW decoder", bool(hw),
                  "hardware JPEG decoder engine present (DALI hw_decoder_load applies)" if hw
                  else "no hardware JPEG decoder on this GPU model: DALI decodes with CUDA")
    return [dali, gpu, nvjpg]


def check_wordnet() -> Check:
    """NLTK's WordNet 3.0 corpus, or the note that ancestry uses the shipped is-a edges instead."""
    from imnet_data import wordnet

    s = wordnet.nltk_wordnet_status()
    if s.get("wordnet") == "3.0":
        return Check("WordNet (NLTK)", True, f"nltk {s.get('nltk')}, WordNet {s['wordnet']} at {s.get('path')}")
    return Check("WordNet (NLTK)", None,
                 f"nltk {s.get('nltk') or 'missing'}, corpus not found: ancestry uses the shipped "
                 "image-net.org is-a edges", s.get("hint", ""))


def check_disk(path: Path) -> Check:
    """Free space at ``path``: fine from the ~160 GB a full ILSVRC2012 conversion needs per copy."""
    try:
        usage = shutil.disk_usage(path)
    except OSError as e:
        return Check("disk", False, f"{path}: {e}")
    free = usage.free / 1e9
    # The official train+val archives are ~155 GB; organized folders or shards need about as much again.
    return Check("disk", free >= 160, f"{free:,.0f} GB free at {path.resolve()}",
                 "" if free >= 160 else "a full ILSVRC2012 conversion needs ~160 GB per copy (archives, "
                                        "organized folders or shards)")


def diagnose(path: Path = Path(".")) -> list[Check]:
    """Every check, in report order."""
    return [check_python(), check_pil(),
            check_module("webdataset", "webdataset", "pip install webdataset"),
            check_module("tqdm", "tqdm", "pip install tqdm"),
            check_module("requests", "requests", "pip install requests"),
            check_module("torch", "torch", "pip install torch (needed by the loaders)"),
            *check_dali(), check_extra("boto3", "boto3", "s3", "s3:// and gs:// shards"),
            check_extra("ray", "ray", "ray", "--executor ray"), check_wordnet(), check_disk(path)]


def render(checks: list[Check]) -> str:
    """The one-screen text report."""
    mark = {True: "ok ", False: "!! ", None: " - "}
    lines = []
    for c in checks:
        lines.append(f"{mark[c.ok]} {c.name:<18} {c.detail}")
        if c.hint:
            lines.append(f"{'':<4}{'':<18} -> {c.hint}")
    return "\n".join(lines)

"""The model to score and its val preprocessing: a torchvision or timm architecture with a local weights file, or
a Python import path to a model (or a function that makes one). Nothing is ever downloaded.

The preprocessing is the model's own: timm's ``pretrained_cfg`` (input size, ``crop_pct``, interpolation, mean,
std; read offline, without weights), torchvision's weights transforms (the weights enum entry whose file name is the
weights file's, else the default), or a callable's ``data_config`` (timm's keys); options override each part.
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imnet_data.errors import UsageError
from imnet_data.loader.base import INTERPOLATIONS, MEAN, STD
from imnet_data.stores.base import file_sha256

LIBRARIES = ("torchvision", "timm")


class ModelError(ValueError):
    """The model cannot be built or its weights do not fit it; the message names the file or import path."""


@dataclass(frozen=True)
class Preprocess:
    """The val transform: shorter side resized to ``resize_size`` (``interpolation``), centre crop of
    ``image_size``, then ``mean``/``std`` normalisation."""

    image_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str              # where it comes from, for the report

    @property
    def crop_pct(self) -> float:
        """The crop's share of the resized shorter side."""
        return self.image_size / self.resize_size


@dataclass
class Model:
    """A model ready to score: ``module`` maps a normalised ``[B, 3, H, W]`` batch to ``[B, 1000]`` logits."""

    module: Callable[..., Any]
    name: str
    weights: str | None
    weights_sha256: str | None
    preprocess: Preprocess

    def settings(self) -> dict:
        """What the report records of the model."""
        return {"model": self.name, "weights": self.weights, "weights_sha256": self.weights_sha256,
                **{k: v for k, v in asdict(self.preprocess).items()}, "crop_pct": round(self.preprocess.crop_pct, 4)}


def load_model(spec: str, weights: Path | None = None, *, image_size: int | None = None,
               crop_pct: float | None = None, interpolation: str | None = None) -> Model:
    """The model ``spec`` names (``torchvision:NAME``, ``timm:NAME``, a bare NAME only one of them knows, or
    ``package.module:attribute``), with ``weights`` loaded (required for an architecture; strict: every tensor
    must fit), and its preprocessing with the given overrides."""
    library, name = _library(spec)
    if library is None:
        module, config, source = _imported(spec), None, f"{spec} data_config"
        config = getattr(module, "data_config", None)
        if weights is not None:
            load_weights(module, weights, spec)
    else:
        if weights is None:
            raise UsageError(f"{spec}: an architecture needs its weights file (--weights FILE); nothing is "
                             "downloaded")
        module, config, source = _architecture(library, name, weights)
        load_weights(module, weights, spec)
    preprocess = _preprocess(config, source, image_size, crop_pct, interpolation)
    return Model(module, spec, str(weights) if weights else None, file_sha256(weights) if weights else None,
                 preprocess)


def _library(spec: str) -> tuple[str | None, str]:
    """``(library, name)`` of an architecture spec; ``(None, spec)`` for an import path."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in LIBRARIES:
        return prefix, rest
    if sep:
        return None, spec
    known = [lib for lib in LIBRARIES if _knows(lib, spec)]
    if len(known) != 1:
        raise UsageError(f"{spec!r}: " + (f"both torchvision and timm have it; name one: torchvision:{spec} or "
                                          f"timm:{spec}" if known else "neither torchvision nor timm has this "
                                          "architecture (or give a package.module:attribute import path)"))
    return known[0], spec


def _knows(library: str, name: str) -> bool:
    try:
        if library == "torchvision":
            import torchvision
            return name in torchvision.models.list_models()
        import timm
        return bool(timm.is_model(name))
    except ImportError:
        return False


def _imported(spec: str) -> Any:
    """The object at ``module:attribute``: a model, or called once (a class or factory) to make one."""
    module_name, _, attribute = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"--model {spec}: cannot import it ({e})") from e
    import torch
    return found if isinstance(found, torch.nn.Module) else found()


def _architecture(library: str, name: str, weights: Path) -> tuple[Any, dict | None, str]:
    """The model (random weights) and its preprocessing config, from the library, offline."""
    if library == "timm":
        import timm
        from timm.data import resolve_data_config
        model = timm.create_model(name, pretrained=False)
        return model, resolve_data_config({}, model=model), f"timm pretrained_cfg of {name}"
    import torchvision
    model = torchvision.models.get_model(name, weights=None)
    try:
        enum = torchvision.models.get_model_weights(name)
    except ValueError:
        return model, None, "defaults (torchvision has no weights entry for it)"
    entry = next((w for w in enum if w.url.rsplit("/", 1)[-1] == Path(weights).name), enum.DEFAULT)
    t = entry.transforms()
    config = {"input_size": (3, t.crop_size[0], t.crop_size[0]), "crop_pct": t.crop_size[0] / t.resize_size[0],
              "interpolation": t.interpolation.value, "mean": tuple(t.mean), "std": tuple(t.std)}
    return model, config, f"torchvision {type(entry).__name__}.{entry.name} transforms"


def _preprocess(config: dict | None, source: str, image_size: int | None, crop_pct: float | None,
                interpolation: str | None) -> Preprocess:
    """The val transform from a timm-style ``config`` (defaults: 224, crop 0.875, bilinear, ImageNet's mean and
    std) with the overrides."""
    config = config or {}
    size = image_size or int(config.get("input_size", (3, 224, 224))[-1])
    pct = crop_pct or float(config.get("crop_pct", 0.875))
    how = interpolation or str(config.get("interpolation", "bilinear"))
    if how not in INTERPOLATIONS:
        raise UsageError(f"interpolation {how!r} ({source}) is not one the loader has: {', '.join(INTERPOLATIONS)}")
    if not 0 < pct <= 1:
        raise UsageError(f"crop_pct must be in (0, 1], got {pct}")
    mean = tuple(float(x) for x in config.get("mean", MEAN))
    std = tuple(float(x) for x in config.get("std", STD))
    return Preprocess(size, math.floor(size / pct), how, mean, std, source)  # type: ignore[arg-type]


def load_weights(module: Any, path: Path, arch: str) -> None:
    """Load a state dict (or a checkpoint holding one under ``state_dict`` or ``model``; a DDP ``module.``
    prefix dropped) into ``module``: every tensor must fit, else :class:`ModelError` naming the file, what is
    missing, what is extra and the first shape that differs."""
    import torch
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such weights file") from None
    except Exception as e:  # noqa: BLE001 -- torch raises many kinds (pickle, zip, EOF) on a file it cannot read
        first = (str(e).strip().splitlines() or [""])[0]   # torch's messages run over many lines
        raise ModelError(f"{path}: not a PyTorch weights file ({type(e).__name__}: {first})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: holds no state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = module.state_dict()
    missing, extra = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    shapes = [f"{k}: file {list(state[k].shape)}, model {list(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or extra or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
                 f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else ""]
        raise ModelError(f"{path}: the weights do not fit {arch}: " + "; ".join(p for p in parts if p))
    module.load_state_dict(state)

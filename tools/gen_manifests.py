#!/usr/bin/env python3
"""Generate the versioned catalog data in ``manifests/`` from ``shared/imagenet-reference`` and timm's lists.

The reference folder holds the real devkit ``meta.mat``, the class counts, the quirk lists, the
standard subsets, the image-net.org WordNet files and the ImageNet-21k / Tiny ImageNet lists. timm's
ImageNet-12k class list is read from the installed timm package (``timm/data/_info/``, the file
huggingface/pytorch-image-models publishes; timm is in the ``[test]`` extra), or from ``--timm-info``.
This script turns them into the files the library ships (read with importlib.resources). Output is
byte-deterministic (sorted JSON, gzip with mtime 0), so a test can prove the committed files equal
a fresh generation::

    python tools/gen_manifests.py                       # writes manifests/
    python tools/gen_manifests.py --out /tmp/m --reference ../shared/imagenet-reference
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
from pathlib import Path

import scipy.io

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE = ROOT.parent / "shared" / "imagenet-reference"

# Facts of the official archives (torchvision's ARCHIVE_META md5s; sizes as public projects list them).
ARCHIVES = {
    "train": {"name": "ILSVRC2012_img_train.tar", "md5": "1d675b47d978889d74fa0da5fadfb00e",
              "size": 147897477120, "members": 1000},
    "val": {"name": "ILSVRC2012_img_val.tar", "md5": "29b22e2961454d5413ddabcf34fc5622",
            "size": 6744924160, "members": 50000},
    "devkit": {"name": "ILSVRC2012_devkit_t12.tar.gz", "md5": "fa75699e90414af021442c21a62c3abf",
               "size": None, "members": None,
               "meta": "ILSVRC2012_devkit_t12/data/meta.mat",
               "val_ground_truth": "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"},
    "bbox_train": {"name": "ILSVRC2012_bbox_train_v2.tar.gz", "md5": None, "size": None, "members": None},
    "bbox_val": {"name": "ILSVRC2012_bbox_val_v3.tgz", "md5": None, "size": None, "members": None},
}

# ImageNet-21k releases: no per-class counts are published, only totals. fall11: 14,197,122 images in 21,841 synsets
# (image-net.org's own figures, quoted by every 21k paper and timm). winter21: 19,167 classes (2,674 fewer than
# fall11, removed in 2019-2021; timm's imagenet-w21-wds card); its image total is not published where we could check
# it, but timm's copy holds 13,151,276 after dropping ~2,000 images under 32 px, a lower bound.
IMAGENET21K_RELEASES = {
    "fall11": {"archive": "fall11_whole.tar", "classes": 21841, "images": 14197122, "images_at_least": False,
               "source": "image-net.org (fall 2011 release)"},
    "winter21": {"archive": "winter21_whole.tar.gz", "classes": 19167, "images": 13151276, "images_at_least": True,
                 "source": "timm/imagenet-w21-wds dataset card: 19,167 classes; "
                           "13,151,276 images after ~2,000 removed"},
}

# The named ImageNet-21k variants (``--classes imagenet-12k`` ...): which release they are cut from, their class list
# (a manifest file, in label order), the label space their labels index, the held-out val split and the resize,
# each rule with where it is published.
IMAGENET21K_VARIANTS = {
    "imagenet-12k": {
        "release": "fall11", "classes": "imagenet21k_imagenet12k.txt.gz", "count": 11821,
        "label_space": "imagenet-12k", "val_per_class": 40, "val_rule": "random", "resize": None,
        "source": "timm's imagenet12k_synsets.txt (huggingface/pytorch-image-models timm/data/_info/); the 11,821 "
                  "fall11 synsets with 40 samples each for validation and at least 400 left for train, 40 per "
                  "class drawn at random for val (rwightman/imagenet-12k README; timm/imagenet-12k-wds card: "
                  "12,129,687 train, 472,840 validation)"},
    "imagenet-22k": {
        "release": "fall11", "classes": "imagenet21k_fall11.txt.gz", "count": 21841,
        "label_space": "imagenet-21k", "val_per_class": 40, "val_rule": "random", "resize": None,
        "val_classes": "imagenet21k_imagenet12k.txt.gz",
        "source": "timm's imagenet22k_synsets.txt (all 21,841 fall11 synsets); its validation split is "
                  "ImageNet-12k's, 40 per class of the 11,821 12k classes only (timm/imagenet-22k-wds card: "
                  "13,673,551 train, 472,840 validation)"},
    "imagenet-21k-p": {
        "release": "winter21", "classes": "imagenet21k_miil_w21.txt.gz", "count": 10450,
        "label_space": "imagenet-21k-p", "val_per_class": 50, "val_rule": "first", "resize": 224,
        "source": "Alibaba-MIIL/ImageNet21K dataset_preprocessing/processing_script.sh: classes with more than "
                  "500 images (winter21: 10,450, timm's imagenet21k_miil_w21_synsets.txt), the first 50 files of "
                  "each class ('ls | head -n 50', no shuffle) moved to val, every image whose longer side is at "
                  "least 224 resized to 224x224 (resize.py; processing_instructions.md: 11,060,223 train, "
                  "522,500 val)"},
}
TIMM_12K = "imagenet12k_synsets.txt"


# ImageNet-C's normalisation (Hendrycks & Dietterich, ICLR 2019, "Benchmarking Neural Network Robustness to Common
# Corruptions and Perturbations", github.com/hendrycks/robustness): AlexNet's top-1 error on each of the 15 benchmark
# corruptions at severities 1..5 (their means are the per-corruption figures every mCE script divides by, e.g.
# gaussian_noise 0.886428), and its clean top-1 error for the relative mCE: the torchvision AlexNet the authors
# evaluated (their ImageNet-C/test.py loads torchvision's alexnet-owt weights), 56.522% top-1 as torchvision's
# AlexNet_Weights.IMAGENET1K_V1 documents it, 0.43478 error (the paper's table rounds it to 43.5).
IMAGENET_C_ALEXNET = {
    "source": "Hendrycks & Dietterich 2019 (ICLR), github.com/hendrycks/robustness; clean error: torchvision "
              "AlexNet_Weights.IMAGENET1K_V1 acc@1 56.522",
    "clean_error": 0.43478,
    "errors": {
        "gaussian_noise": [0.69528, 0.82542, 0.93554, 0.98138, 0.99452],
        "shot_noise": [0.71224, 0.85108, 0.93574, 0.98182, 0.99146],
        "impulse_noise": [0.78374, 0.89808, 0.9487, 0.9872, 0.99548],
        "defocus_blur": [0.65624, 0.73202, 0.85036, 0.91364, 0.94714],
        "glass_blur": [0.64308, 0.75054, 0.88806, 0.91622, 0.93344],
        "motion_blur": [0.5843, 0.70048, 0.82108, 0.8975, 0.92638],
        "zoom_blur": [0.70008, 0.76992, 0.80784, 0.84198, 0.87198],
        "snow": [0.71726, 0.88392, 0.86468, 0.9187, 0.94952],
        "frost": [0.6139, 0.79734, 0.8879, 0.89942, 0.9343],
        "fog": [0.67474, 0.7605, 0.84378, 0.8726, 0.945],
        "brightness": [0.4514, 0.48502, 0.54048, 0.62166, 0.7244],
        "contrast": [0.64548, 0.7615, 0.88874, 0.9776, 0.9927],
        "elastic_transform": [0.52596, 0.70116, 0.55686, 0.64076, 0.80554],
        "pixelate": [0.52218, 0.5462, 0.73728, 0.87092, 0.91262],
        "jpeg_compression": [0.51002, 0.54718, 0.57294, 0.65458, 0.74778],
    },
}


def _lines(path: Path) -> list[str]:
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _json(obj: object) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def _text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def devkit_synsets(ref: Path) -> list[dict]:
    """All 1860 synsets of the real devkit meta.mat, field for field, in file order."""
    raw = scipy.io.loadmat(ref / "devkit" / "meta.mat", squeeze_me=True)["synsets"]
    out = []
    for s in raw:
        children = s["children"]
        out.append({
            "ILSVRC2012_ID": int(s["ILSVRC2012_ID"]),
            "WNID": str(s["WNID"]),
            "words": str(s["words"]),
            "gloss": str(s["gloss"]),
            "num_children": int(s["num_children"]),
            "children": [int(c) for c in (children.ravel() if hasattr(children, "ravel") else [children])],
            "wordnet_height": int(s["wordnet_height"]),
            "num_train_images": int(s["num_train_images"]),
        })
    return out


def ilsvrc2012(ref: Path, synsets: list[dict]) -> dict:
    """The 1000 classes in sorted-WNID order with devkit IDs, names, gloss and train counts."""
    counts = {}
    for row in _lines(ref / "ilsvrc2012" / "train_counts.tsv")[1:]:
        wnid, _, n = row.split("\t")
        counts[wnid] = int(n)
    leaves = sorted((s for s in synsets if s["num_children"] == 0), key=lambda s: s["WNID"])
    classes = [{
        "index": i, "wnid": s["WNID"], "ilsvrc2012_id": s["ILSVRC2012_ID"],
        "names": [n.strip() for n in s["words"].split(",")], "gloss": s["gloss"],
        "train_images": counts[s["WNID"]],
    } for i, s in enumerate(leaves)]
    gt = [int(x) for x in _lines(ref / "devkit" / "ILSVRC2012_validation_ground_truth.txt")]
    return {
        "format_version": 1,
        "archives": ARCHIVES,
        "classes": classes,
        "train_images": sum(counts.values()),
        "val_images": len(gt),
        "val_per_class": len(gt) // len(classes),
        "cmyk_train_images": sorted(_lines(ref / "ilsvrc2012" / "cmyk_train_images.txt")),
        "png_train_images": sorted(_lines(ref / "ilsvrc2012" / "png_train_images.txt")),
    }


def real_labels(ref: Path) -> bytes:
    """ReaL (Beyer et al. 2020, "Are we done with ImageNet?"): for ILSVRC2012_val_%08d.JPEG, i = 1..50000, the
    sorted-WNID class indices the raters kept (empty for 3,163 images), as one compact JSON list of lists."""
    labels = json.loads((ref / "ilsvrc2012" / "real_labels.json").read_text())
    if len(labels) != 50000 or not all(isinstance(x, list) and all(0 <= i < 1000 for i in x) for x in labels):
        raise ValueError("real_labels.json: expected 50,000 lists of class indices 0..999")
    return (json.dumps([sorted(x) for x in labels], separators=(",", ":")) + "\n").encode()


def timm_info() -> Path:
    """The ``timm/data/_info`` folder of the installed timm (found without importing it: that imports torch)."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("timm is not installed (pip install -e '.[test]'), or pass --timm-info DIR")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"


def imagenet12k(info: Path, fall11: list[str]) -> list[str]:
    """timm's 11,821 ImageNet-12k synsets, checked: sorted, unique, all fall11 synsets."""
    wnids = _lines(info / TIMM_12K)
    if len(wnids) != 11821 or wnids != sorted(set(wnids)) or not set(wnids) <= set(fall11):
        raise ValueError(f"{info / TIMM_12K}: expected 11,821 sorted, unique fall11 synsets")
    return wnids


def generate(ref: Path, info: Path) -> dict[str, bytes]:
    """Every manifest file name -> its bytes."""
    synsets = devkit_synsets(ref)
    i21 = ref / "imagenet21k"
    lemma = dict(line.split("\t", 1) for line in _lines(i21 / "imagenet_synset_to_lemma.txt"))
    definition = dict(line.split("\t", 1) for line in _lines(i21 / "imagenet_synset_to_definition.txt"))
    words21k = [f"{w}\t{lemma[w]}\t{definition.get(w, '')}" for w in sorted(lemma)]
    return {
        "ilsvrc2012.json": _json(ilsvrc2012(ref, synsets)),
        "ilsvrc2012_devkit_synsets.json": _json(synsets),
        "ilsvrc2012_val_ground_truth.txt.gz":
            _gz((ref / "devkit" / "ILSVRC2012_validation_ground_truth.txt").read_bytes()),
        "ilsvrc2012_real_labels.json.gz": _gz(real_labels(ref)),
        "subset_1percent.txt.gz": _gz(_text(_lines(ref / "ilsvrc2012" / "1percent.txt"))),
        "subset_10percent.txt.gz": _gz(_text(_lines(ref / "ilsvrc2012" / "10percent.txt"))),
        "subset_imagenet_a.txt": _text(_lines(i21 / "imagenet_a_synsets.txt")),
        "subset_imagenet_r.txt": _text(_lines(i21 / "imagenet_r_synsets.txt")),
        "imagenet21k_fall11.txt.gz": _gz(_text(_lines(i21 / "imagenet22k_synsets.txt"))),
        "imagenet21k_goog.txt.gz": _gz(_text(_lines(i21 / "imagenet21k_goog_synsets.txt"))),
        "imagenet21k_miil_w21.txt.gz": _gz(_text(_lines(i21 / "imagenet21k_miil_w21_synsets.txt"))),
        "imagenet21k_imagenet12k.txt.gz": _gz(_text(imagenet12k(info, _lines(i21 / "imagenet22k_synsets.txt")))),
        "imagenet21k_variants.json": _json({"format_version": 1, "variants": IMAGENET21K_VARIANTS}),
        "imagenet21k_words.tsv.gz": _gz(_text(words21k)),
        "imagenet21k_releases.json": _json({"format_version": 1, "releases": IMAGENET21K_RELEASES}),
        "imagenet_c_alexnet.json": _json({"format_version": 1, **IMAGENET_C_ALEXNET}),
        "tiny_imagenet_wnids.txt": _text(_lines(ref / "tiny-imagenet-200" / "wnids.txt")),
        "tiny_imagenet_val_annotations.tsv.gz": _gz(_text(_lines(ref / "tiny-imagenet-200" / "val_annotations.txt"))),
        "wordnet_is_a.txt.gz": _gz(_text(_lines(ref / "wordnet" / "wordnet.is_a.txt"))),
        "wordnet_words.tsv.gz": _gz(_text(_lines(ref / "wordnet" / "words.txt"))),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE, help="shared/imagenet-reference folder")
    parser.add_argument("--out", type=Path, default=ROOT / "manifests", help="output folder (default: manifests/)")
    parser.add_argument("--timm-info", type=Path, help="timm's timm/data/_info folder (default: the installed timm's)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in generate(args.reference, args.timm_info or timm_info()).items():
        (args.out / name).write_bytes(data)
        print(f"{name}\t{len(data)} bytes")


if __name__ == "__main__":
    main()

"""What the readers people already have look for beside the shards, written from each split's manifest.

* ``DEST/<split>/wids.json``: the shard index of ``wids.ShardListDataset`` (random access);
* ``DEST/_info.json``: timm's WebDataset split table (``create_dataset('wds/...', root=DEST, split=...)``), with
  ``validation`` (timm's ``train.py`` default ``--val-split``) as another name of ``val``;
* ``DEST/README.md``: a Hugging Face dataset card whose YAML ``configs`` points each split at its tars only and
  whose ``features`` give every field its type, so ``datasets.load_dataset(DEST)`` reads the set as it is.

All deterministic, written atomically into any writable store (a folder, a bucket), rewritten as splits are
added.
"""
from __future__ import annotations

import re

from imnet_data.shards.schema import SAMPLE_FIELDS, check_info, load_json
from imnet_data.stores import WritableStore
from imnet_data.tario import json_bytes

WIDS = "wids.json"
INFO = "_info.json"
CARD = "README.md"
ALIASES = {"val": "validation"}   # a split -> another name timm and Hugging Face use for it


def write_wids(split: WritableStore, manifest: dict) -> None:
    """``wids.json`` of a split folder: shard URLs relative to it, with their sample counts and sizes."""
    split.write(WIDS, json_bytes({"__kind__": "wids-shard-index-v1", "wids_version": 1,
                                  "name": f"{manifest['name']}-{manifest['split']}",
                                  "shardlist": [{"url": s["name"], "nsamples": s["samples"], "filesize": s["bytes"]}
                                                for s in manifest["shards"]]}))


def update_info(root: WritableStore, manifest: dict) -> None:
    """Add or replace the split's entries of ``root/_info.json`` (and its alias), then rewrite the card."""
    try:
        raw = root.read(INFO)
        info = check_info(load_json(raw, root.url(INFO)), root.url(INFO)) if raw is not None else {}
    except ValueError:   # unusable: start it anew
        info = {}
    split = manifest["split"]
    entry = {"num_samples": manifest["num_samples"],
             "filenames": [f"{split}/{s['name']}" for s in manifest["shards"]],
             "shard_lengths": [s["samples"] for s in manifest["shards"]]}
    info["name"] = manifest["name"]
    if manifest.get("options", {}).get("variant"):   # a 21k variant: its label space, for the readers of _info
        info["label_space"], info["num_classes"] = manifest["label_space"], len(manifest["classes"])
    if manifest.get("evaluation"):   # an evaluation set: which one, and which variant this split is
        entry["evaluation"] = {k: manifest["evaluation"][k] for k in ("set", "variant")}
    info.setdefault("splits", {})[split] = {"name": split, **entry}
    if split in ALIASES:
        info["splits"][ALIASES[split]] = {"name": ALIASES[split], "alias_of": split, **entry}
    root.write(INFO, json_bytes(info))
    write_card(root, info)


def splits_of(info: dict) -> list[str]:
    """The split folders ``_info.json`` lists (not the other names of a split)."""
    return sorted(name for name, entry in info.get("splits", {}).items() if "alias_of" not in entry)


def card_split(split: str) -> str:
    """The split's name in the dataset card: its alias, with every character but letters, digits, ``_`` and ``.``
    made a ``_`` (Hugging Face's split names; ``matched-frequency`` -> ``matched_frequency``)."""
    return re.sub(r"[^\w.]", "_", ALIASES.get(split, split))


def _evaluation_lines(info: dict) -> list[str]:
    """The card's lines naming the evaluation set and variant of each split (none for a training set)."""
    rows = [(split, info["splits"][split]["evaluation"]) for split in splits_of(info)
            if "evaluation" in info["splits"][split]]
    return (["An evaluation set, labels in the ImageNet-1k index (`.cls`; the set's own classes are the `mask` "
             "of each split's manifest): " + "; ".join(f"split `{split}`: {e['set']}" +
                                                       (f" ({e['variant']})" if e["variant"] else "")
                                                       for split, e in rows) + ".", ""] if rows else [])


def write_card(root: WritableStore, info: dict) -> None:
    """``root/README.md``: the dataset card ``datasets.load_dataset(root)`` reads (see the module doc)."""
    lines = ["---", f"pretty_name: {info['name']} (WebDataset shards by imnet-data)", "configs:",
             "- config_name: default", "  data_files:"]
    for split in splits_of(info):
        lines += [f"  - split: {card_split(split)}", f"    path: {split}/*.tar"]
    lines += ["dataset_info:", "  features:", "  - name: cls", "    dtype: int64", "  - name: jpg",
              "    dtype: image", "  - name: json", "    struct:"]
    for name, (_, dtype, _) in SAMPLE_FIELDS.items():
        kind, _, item = dtype.partition(":")
        lines += [f"    - name: {name}", f"      list: {item}" if kind == "list" else f"      dtype: {kind}"]
    lines += ["  - name: __key__", "    dtype: string", "  - name: __url__", "    dtype: string", "---", "",
              f"# {info['name']}", "",
              "WebDataset shards written by imnet-data: per sample `<key>.jpg` (JPEG), `<key>.cls` (class index) "
              "and `<key>.json` (the fields above). Each split folder also holds its `manifest.json` (sha256 and "
              "class histogram of every shard), DALI `.idx` files and `wids.json`.", "", *_evaluation_lines(info),
              "```python", "import datasets", 'ds = datasets.load_dataset("path/to/this/folder")', "```", ""]
    root.write(CARD, "\n".join(lines).encode())

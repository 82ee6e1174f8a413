"""The ILSVRC2012 catalog against the real devkit files (meta.mat, val ground truth) read independently."""
from __future__ import annotations

from collections import Counter

import pytest
import scipy.io

from imnet_data import catalog
from imnet_data.catalog import UnknownClassError
from tests.helpers import REFERENCE

needs_reference = pytest.mark.skipif(not (REFERENCE / "devkit" / "meta.mat").exists(),
                                     reason=f"real devkit reference not found at {REFERENCE}")


def test_sorted_wnid_index_convention() -> None:
    cat = catalog.ilsvrc2012()
    assert len(cat) == 1000
    assert list(cat.wnids) == sorted(cat.wnids)
    assert (cat[0].wnid, cat[0].name) == ("n01440764", "tench")
    assert (cat[999].wnid, cat[999].name) == ("n15075141", "toilet tissue")
    assert cat.by_ilsvrc2012_id(1).wnid == "n02119789"  # devkit order differs: ID 1 is kit fox
    assert sum(c.train_images for c in cat) == 1_281_167


@needs_reference
def test_matches_real_meta_mat() -> None:
    meta = scipy.io.loadmat(REFERENCE / "devkit" / "meta.mat", squeeze_me=True)["synsets"]
    leaves = {str(s["WNID"]): (int(s["ILSVRC2012_ID"]), str(s["words"]), int(s["num_train_images"]))
              for s in meta if int(s["num_children"]) == 0}
    cat = catalog.ilsvrc2012()
    assert {c.wnid: (c.ilsvrc2012_id, ", ".join(c.names), c.train_images) for c in cat} == leaves
    assert len(catalog.devkit_synsets()) == 1860


@needs_reference
def test_val_ground_truth_maps_to_50_per_class() -> None:
    gt = [int(x) for x in (REFERENCE / "devkit" / "ILSVRC2012_validation_ground_truth.txt").read_text().split()]
    assert catalog.val_ground_truth() == gt
    cat = catalog.ilsvrc2012()
    counts = Counter(cat.ilsvrc2012_id_to_index(i) for i in gt)
    assert set(counts.values()) == {50} and len(counts) == 1000


def test_index_conversions_round_trip() -> None:
    cat = catalog.ilsvrc2012()
    for c in cat:
        assert cat.ilsvrc2012_id_to_index(cat.index_to_ilsvrc2012_id(c.index)) == c.index
        assert cat.index_to_wnid(cat.wnid_to_index(c.wnid)) == c.wnid
    assert sorted(cat.index_to_ilsvrc2012_id(i) for i in range(1000)) == list(range(1, 1001))


def test_lookup_by_index_wnid_name_and_search() -> None:
    cat = catalog.ilsvrc2012()
    assert cat.get(0) is cat.get("0") is cat.get("n01440764") is cat.get("Tench") is cat.get("Tinca tinca")
    terriers = cat.search("terrier")
    assert len(terriers) > 20 and all("terrier" in " ".join(c.names).lower() for c in terriers)


@pytest.mark.parametrize("query, expect", [
    ("tenhc", "n01440764 (tench)"),
    ("n0144076", "n01440764 (tench)"),
    ("crane", "n03126707 (crane)"),  # ambiguous: the bird and the machine
])
def test_unknown_or_ambiguous_names_suggest(query: str, expect: str) -> None:
    with pytest.raises(UnknownClassError) as e:
        catalog.ilsvrc2012().get(query)
    assert repr(query) in str(e.value) and expect in e.value.suggestions


def test_out_of_range() -> None:
    with pytest.raises(UnknownClassError, match="1000 is out of range"):
        catalog.ilsvrc2012().get(1000)
    with pytest.raises(UnknownClassError, match="ILSVRC2012_ID 0"):
        catalog.ilsvrc2012().by_ilsvrc2012_id(0)


def test_facts_quirks_subsets() -> None:
    f = catalog.facts()
    assert f["archives"]["train"]["md5"] == "1d675b47d978889d74fa0da5fadfb00e"
    assert f["archives"]["val"]["members"] == 50_000 and f["val_per_class"] == 50
    q = catalog.known_quirks()
    assert len(q["cmyk"]) == 22 and q["png"] == {"n02105855_2933.JPEG"}
    wnids = set(catalog.ilsvrc2012().wnids)
    assert {n.split("_")[0] for n in q["cmyk"] | q["png"]} <= wnids
    assert catalog.subset("1percent") [0] == "files" and len(catalog.subset("1percent")[1]) == 12_811
    assert len(catalog.subset("10percent")[1]) == 128_116
    for name in ("imagenet-a", "imagenet-r", "tiny-imagenet"):
        kind, items = catalog.subset(name)
        assert kind == "wnids" and len(items) == 200 and set(items) <= wnids
    with pytest.raises(UnknownClassError, match="unknown subset"):
        catalog.subset("5percent")


def test_imagenet21k_and_tiny() -> None:
    assert len(catalog.imagenet21k("fall11")) == 21_841
    assert len(catalog.imagenet21k("goog")) == 21_843
    assert len(catalog.imagenet21k("miil_w21")) == 10_450
    assert catalog.synset_words("n02084071").startswith("dog, domestic dog")
    assert "Canis" in catalog.synset_definition("n02084071")
    ann = catalog.tiny_imagenet_val_annotations()
    assert len(ann) == 10_000 and ann[0] == ("val_0.JPEG", "n03444034", (0, 32, 44, 62))
    with pytest.raises(UnknownClassError):
        catalog.synset_words("n99999999")

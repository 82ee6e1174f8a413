"""WordNet ancestry on real data: the shipped image-net.org edges, and NLTK over Debian's WordNet 3.0."""
from __future__ import annotations

import gzip
import itertools
import re
from pathlib import Path

import pytest

from imnet_data import catalog, wordnet, wordnet_corpus
from imnet_data.wordnet import DEBIAN_WORDNET, ENTITY, WordNetMissing, hierarchy, install_wordnet

TENCH = "n01440764"
DOG = "n02084071"
SPAIN = "n09023321"  # an instance noun: only NLTK's instance hypernyms place it
WNIDS = catalog.ilsvrc2012().wnids
DOG_BREEDS = WNIDS[151:269]  # 151 Chihuahua .. 268 Mexican hairless

needs_debian_wordnet = pytest.mark.skipif(
    not (DEBIAN_WORDNET / "data.noun").is_file(),
    reason="Debian WordNet 3.0 absent: apt-get install wordnet-base wordnet-sense-index")


@pytest.fixture(scope="module")
def offline() -> wordnet.Hierarchy:
    return hierarchy("offline")


@pytest.fixture(scope="module")
def nltk_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An NLTK data folder that install_wordnet built from /usr/share/wordnet (once per module: about 2 s)."""
    if not (DEBIAN_WORDNET / "data.noun").is_file():
        pytest.skip("Debian WordNet 3.0 absent: apt-get install wordnet-base wordnet-sense-index")
    return install_wordnet(DEBIAN_WORDNET, tmp_path_factory.mktemp("nltk_data"))


@pytest.fixture(scope="module")
def nltk(nltk_data: Path) -> wordnet.Hierarchy:
    """hierarchy("nltk") found through NLTK_DATA set after NLTK's import; it keeps working once NLTK_DATA is unset."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLTK_DATA", str(nltk_data))
        return hierarchy("nltk")


@pytest.fixture
def no_nltk_wordnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NLTK sees only an empty data dir (NLTK_DATA and nltk.data.path restored afterwards)."""
    import nltk.data

    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])


def test_offline_tench_path(offline: wordnet.Hierarchy) -> None:
    path = offline.hypernym_path(TENCH)
    assert offline.backend == "offline"
    assert path[0] == ENTITY and path[-1] == TENCH
    assert path == offline.hypernym_paths(TENCH)[0]
    assert all(offline.parents(child) == [parent] for parent, child in itertools.pairwise(path))


def test_offline_paths_are_ordered_longest_then_lexicographic(offline: wordnet.Hierarchy) -> None:
    for wnid in WNIDS:
        paths = offline.hypernym_paths(wnid)
        assert paths == sorted(paths, key=lambda p: (-len(p), p))
        assert all(p[0] == ENTITY and p[-1] == wnid for p in paths)
        assert offline.ancestors(wnid) == {w for p in paths for w in p[:-1]}
    assert max(len(offline.hypernym_paths(w)) for w in WNIDS) > 1  # some classes do have several paths


def test_every_dog_breed_is_under_dog(offline: wordnet.Hierarchy) -> None:
    assert len(DOG_BREEDS) == 118
    assert catalog.ilsvrc2012()[151].name == "Chihuahua" and catalog.ilsvrc2012()[268].name == "Mexican hairless"
    assert all(offline.is_under(w, DOG) for w in DOG_BREEDS)
    assert not offline.is_under(TENCH, DOG)
    assert not offline.is_under(DOG, DOG)
    assert offline.descendants(DOG) == list(DOG_BREEDS)
    assert offline.descendants(DOG, among=[TENCH, WNIDS[151], WNIDS[151]]) == [WNIDS[151]]


def test_group_at_depth_is_deterministic(offline: wordnet.Hierarchy) -> None:
    groups = offline.group_at_depth(WNIDS, 6)
    assert groups == offline.group_at_depth(reversed(WNIDS), 6) == wordnet._OfflineHierarchy().group_at_depth(WNIDS, 6)
    assert len(set(groups.values())) == 76
    assert groups[TENCH] == "n00015388"  # animal
    assert set(offline.group_at_depth(DOG_BREEDS, 13).values()) == {DOG}
    assert set(offline.group_at_depth(WNIDS, 0).values()) == {ENTITY}
    assert offline.group_at_depth([TENCH], 99) == {TENCH: TENCH}
    with pytest.raises(ValueError, match="depth"):
        offline.group_at_depth([TENCH], -1)


def test_unknown_wnid_names_input_and_close_matches(offline: wordnet.Hierarchy) -> None:
    with pytest.raises(catalog.UnknownClassError, match="n01440765") as err:
        offline.parents("n01440765")
    assert TENCH in err.value.suggestions
    with pytest.raises(catalog.UnknownClassError, match="n01440765"):
        offline.is_under(TENCH, "n01440765")
    with pytest.raises(catalog.UnknownClassError, match=r"hierarchy\('nltk'\)"):
        offline.hypernym_path(SPAIN)


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="offline"):
        hierarchy("wordnet")


def test_missing_nltk_wordnet_says_how_to_install(no_nltk_wordnet: None) -> None:
    with pytest.raises(WordNetMissing) as err:
        hierarchy("nltk")
    for step in ("apt-get install wordnet-base wordnet-sense-index", "imnet-data wordnet --from /usr/share/wordnet",
                 'backend="offline"'):
        assert step in str(err.value)
    assert hierarchy("auto").backend == "offline"
    status = wordnet.nltk_wordnet_status()
    assert status["nltk"] and status["wordnet"] is None and status["path"] is None
    assert "apt-get install wordnet-base" in status["hint"]


def test_install_defaults_to_nltk_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "not_yet"))
    assert wordnet_corpus._default_data_dir() == tmp_path / "not_yet"


def test_install_names_missing_file(tmp_path: Path) -> None:
    source = tmp_path / "dict"
    source.mkdir()
    for name in wordnet.DICT_FILES:
        (source / name).write_text("")
    (source / "data.noun").unlink()
    with pytest.raises(FileNotFoundError, match="data.noun"):
        install_wordnet(source, tmp_path / "nltk_data")
    assert not (tmp_path / "nltk_data").exists()


@needs_debian_wordnet
def test_failed_install_keeps_previous_corpus(nltk_data: Path, tmp_path: Path) -> None:
    source = tmp_path / "dict"
    source.mkdir()
    for name in wordnet.DICT_FILES:
        (source / name).symlink_to(DEBIAN_WORDNET / name)
    (source / "data.adj").unlink()
    (source / "data.adj").write_text("  1 no version line here\n")
    before = (nltk_data / "corpora" / "wordnet" / "data.adj").stat()
    with pytest.raises(ValueError, match=re.escape(str(source))):
        install_wordnet(source, nltk_data)
    assert [p.name for p in (nltk_data / "corpora").iterdir()] == ["wordnet"]
    assert (nltk_data / "corpora" / "wordnet" / "data.adj").stat() == before


@needs_debian_wordnet
def test_install_is_idempotent(nltk_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert install_wordnet(DEBIAN_WORDNET, nltk_data) == nltk_data
    corpus = nltk_data / "corpora" / "wordnet"
    assert [p.name for p in corpus.parent.iterdir()] == ["wordnet"]
    assert sorted(p.name for p in corpus.iterdir()) == sorted(wordnet.DICT_FILES + ("lexnames",))
    assert not any(p.is_symlink() for p in corpus.iterdir())  # NLTK refuses links out of its data dirs
    monkeypatch.setenv("NLTK_DATA", str(nltk_data))
    status = wordnet.nltk_wordnet_status()
    assert (status["wordnet"], status["path"], status["hint"]) == ("3.0", str(corpus), "")
    assert hierarchy("auto").backend == "nltk"


@needs_debian_wordnet
def test_lexnames_match_wordnet_manual(nltk_data: Path, nltk: wordnet.Hierarchy) -> None:
    manual = Path("/usr/share/man/man5/lexnames.5WN.gz")
    if not manual.is_file():
        pytest.skip("lexnames(5WN) manual page absent")
    table = re.findall(r"^(\d\d)\t(\S+)\s*\t", gzip.decompress(manual.read_bytes()).decode(), re.M)
    written = (nltk_data / "corpora" / "wordnet" / "lexnames").read_text().splitlines()
    assert [line.split("\t")[:2] for line in written] == [list(row) for row in table]
    assert nltk._reader.synset_from_pos_and_offset("n", int(TENCH[1:])).lexname() == "noun.animal"


@needs_debian_wordnet
def test_nltk_tench_and_instance_hypernyms(nltk: wordnet.Hierarchy) -> None:
    assert nltk.backend == "nltk" and nltk.version == "3.0"
    assert nltk.hypernym_path(TENCH)[0] == ENTITY and nltk.hypernym_path(TENCH)[-1] == TENCH
    assert nltk.parents(SPAIN) == ["n08696931"]  # European country, an instance hypernym
    assert nltk.hypernym_path(SPAIN)[0] == ENTITY
    with pytest.raises(catalog.UnknownClassError, match="n01440765"):
        nltk.parents("n01440765")


@needs_debian_wordnet
def test_nltk_and_offline_agree_on_all_classes(nltk: wordnet.Hierarchy, offline: wordnet.Hierarchy) -> None:
    disagree = [w for w in WNIDS if nltk.is_under(w, DOG) != offline.is_under(w, DOG)]
    assert disagree == []
    assert nltk.descendants(DOG) == list(DOG_BREEDS)
    assert [w for w in WNIDS if nltk.hypernym_paths(w) != offline.hypernym_paths(w)] == []
    assert nltk.group_at_depth(WNIDS, 6) == offline.group_at_depth(WNIDS, 6)

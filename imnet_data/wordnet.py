"""WordNet ancestry of ImageNet synsets: parents, hypernym paths, "is this class a dog?", coarse groups.

A WNID is ``n`` + the 8-digit offset of a noun in WordNet 3.0, so two backends answer the same questions:

* ``nltk``: NLTK's reader over a WordNet 3.0 corpus folder (``imnet-data wordnet --from /usr/share/wordnet``
  builds one from Debian's ``wordnet-base`` and ``wordnet-sense-index`` without any download). It covers all
  82,115 nouns and follows instance hypernyms (``Spain`` -> ``European country``) too.
* ``offline``: the image-net.org ``parent child`` is-a edges shipped with this package. They are exactly WordNet
  3.0's regular hypernym links, so they place 74,374 nouns under ``entity`` (the 1000 ILSVRC2012 classes and all
  but 4 of fall11's 21,841) but not instance nouns (places, people: ``sun``, ``Bram Stoker``), reported unknown.

Paths run from the root ``n00001740`` (entity) down to the queried WNID.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections import defaultdict
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from imnet_data import catalog, resources

ENTITY = "n00001740"
WORDNET_VERSION = "3.0"
DEBIAN_WORDNET = Path("/usr/share/wordnet")

#: The 45 WordNet 3.0 lexicographer files in file-number order (lexnames(5WN)); Debian ships no ``lexnames``
#: file but NLTK's reader needs one to name each synset's file (``tench.n.01`` -> ``noun.animal``).
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

#: The WordNet dict files NLTK's reader opens (all but ``lexnames``, which install_wordnet writes).
DICT_FILES = tuple(f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")) + tuple(
    f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")) + ("index.sense", "cntlist.rev")

HOWTO = ("install it without network access: `apt-get install wordnet-base wordnet-sense-index`, then "
         "`imnet-data wordnet --from /usr/share/wordnet` (and point NLTK_DATA at the folder it prints unless that "
         "is a default NLTK data dir); or use hierarchy(backend=\"offline\"), the shipped image-net.org is-a edges")


class WordNetMissing(RuntimeError):
    """A query needs NLTK or its WordNet 3.0 corpus and it is not installed; the message says how to get it."""


class Hierarchy(ABC):
    """WordNet ancestry queries over WNIDs; get one from :func:`hierarchy` (instances are cached and memoize)."""

    backend: str

    def __init__(self) -> None:
        self._paths: dict[str, tuple[tuple[str, ...], ...]] = {}
        self._ancestors: dict[str, frozenset[str]] = {}

    @abstractmethod
    def _direct_parents(self, wnid: str) -> Iterable[str]:
        """Direct hypernyms of ``wnid``; raises :class:`catalog.UnknownClassError` where the backend lacks it."""

    def parents(self, wnid: str) -> list[str]:
        """Direct hypernyms of ``wnid`` (with instance hypernyms on the nltk backend), sorted."""
        return sorted(set(self._direct_parents(wnid)))

    def hypernym_paths(self, wnid: str) -> list[list[str]]:
        """Every path from the root (``n00001740`` entity) down to ``wnid``: longest first, then lexicographic."""
        return [list(path) for path in self._path_tuples(wnid)]

    def hypernym_path(self, wnid: str) -> list[str]:
        """One path root..``wnid``, chosen reproducibly: the longest, ties broken lexicographically by WNIDs.

        The longest path is the most specific chain, so depths along it are the finest available.
        """
        return list(self._path_tuples(wnid)[0])

    def ancestors(self, wnid: str) -> set[str]:
        """Every hypernym of ``wnid`` over all its paths, ``wnid`` itself excluded."""
        return set(self._ancestor_set(wnid))

    def is_under(self, wnid: str, ancestor: str) -> bool:
        """Whether ``ancestor`` is a proper hypernym of ``wnid`` (e.g. every dog breed is under n02084071 dog).

        A WNID is not under itself. Both WNIDs must be known, so a typo raises instead of reading as ``False``.
        """
        self._direct_parents(ancestor)  # raises UnknownClassError for an unknown ancestor
        return ancestor in self._ancestor_set(wnid)

    def descendants(self, wnid: str, among: Iterable[str] | None = None) -> list[str]:
        """The WNIDs of ``among`` (default: the 1000 ILSVRC2012 classes) that are under ``wnid``, sorted."""
        candidates = catalog.ilsvrc2012().wnids if among is None else among
        return sorted({w for w in candidates if self.is_under(w, wnid)})

    def group_at_depth(self, wnids: Iterable[str], depth: int) -> dict[str, str]:
        """Map each WNID to its ancestor ``depth`` steps below the root on :meth:`hypernym_path`.

        The root is depth 0; a WNID whose path is not deeper than ``depth`` maps to itself. Coarse groups for
        hierarchical losses or per-superclass metrics, identical on every run.
        """
        if depth < 0:
            raise ValueError(f"depth must be >= 0 (the root is depth 0), got {depth}")
        out = {}
        for wnid in wnids:
            path = self._path_tuples(wnid)[0]
            out[wnid] = path[depth] if depth < len(path) else wnid
        return out

    def _path_tuples(self, wnid: str) -> tuple[tuple[str, ...], ...]:
        if wnid not in self._paths:
            paths = [path + (wnid,) for parent in self.parents(wnid) for path in self._path_tuples(parent)]
            self._paths[wnid] = tuple(sorted(paths or [(wnid,)], key=lambda p: (-len(p), p)))
        return self._paths[wnid]

    def _ancestor_set(self, wnid: str) -> frozenset[str]:
        if wnid not in self._ancestors:
            found: set[str] = set()
            for parent in self.parents(wnid):
                found.add(parent)
                found |= self._ancestor_set(parent)
            self._ancestors[wnid] = frozenset(found)
        return self._ancestors[wnid]


class _OfflineHierarchy(Hierarchy):
    """The shipped image-net.org is-a edges, parsed once (about 0.2 s)."""

    backend = "offline"

    def __init__(self) -> None:
        super().__init__()
        parents: dict[str, list[str]] = defaultdict(list)
        children: dict[str, list[str]] = defaultdict(list)
        for line in resources.read_lines("wordnet_is_a.txt.gz"):
            parent, child = line.split()
            parents[child].append(parent)
            children[parent].append(child)
        self._parent_map = dict(parents)
        self._placed = _reachable(ENTITY, children)

    def _direct_parents(self, wnid: str) -> Iterable[str]:
        if wnid not in self._placed:
            words = catalog.synset_words(wnid)  # raises, with close matches, unless wnid is a WordNet 3.0 noun
            raise catalog.UnknownClassError(
                wnid, f"{wnid!r} ({words}) is not placed under entity by the image-net.org is-a edges (WordNet "
                      "instance nouns such as places and people are left out); hierarchy('nltk') has it", [])
        return self._parent_map.get(wnid, ())


def _reachable(root: str, children: dict[str, list[str]]) -> set[str]:
    """``root`` and everything below it."""
    seen, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


class _NltkHierarchy(Hierarchy):
    """NLTK's WordNet reader over one corpus location; synsets are looked up by offset on demand."""

    backend = "nltk"

    def __init__(self, reader: Any, path: str) -> None:
        super().__init__()
        self._reader = reader
        self.path = path
        self.version = reader.get_version()

    def _direct_parents(self, wnid: str) -> Iterable[str]:
        catalog.synset_words(wnid)  # raises, with close matches, unless wnid is a WordNet 3.0 noun
        synset = self._reader.synset_from_pos_and_offset("n", int(wnid[1:]))
        return [f"n{s.offset():08d}" for s in synset.hypernyms() + synset.instance_hypernyms()]


def hierarchy(backend: str = "auto") -> Hierarchy:
    """The WordNet hierarchy from ``backend``: ``nltk``, ``offline`` or ``auto`` (nltk when installed, else offline).

    ``nltk`` raises :class:`WordNetMissing` with install steps when NLTK's WordNet 3.0 is absent. NLTK_DATA is read
    at each call, so setting it after import works. Instances are cached: the nltk one takes about 2 s to load
    (NLTK's lemma index), the offline one about 0.2 s.
    """
    if backend == "offline":
        return _offline()
    if backend == "nltk":
        return _nltk_checked()
    if backend == "auto":
        try:
            return _nltk_checked()
        except WordNetMissing:
            return _offline()
    raise ValueError(f"unknown WordNet backend {backend!r} (known: auto, nltk, offline)")


@lru_cache(maxsize=1)
def _offline() -> _OfflineHierarchy:
    return _OfflineHierarchy()


def _nltk_checked() -> _NltkHierarchy:
    loaded = _nltk_loaded()
    problem = _version_problem(loaded)
    if problem:
        raise WordNetMissing(problem)
    return loaded


def _version_problem(loaded: _NltkHierarchy) -> str:
    """Why this corpus cannot serve ImageNet ('' when it can): WNIDs are offsets into WordNet 3.0 only."""
    if loaded.version == WORDNET_VERSION:
        return ""
    return (f"NLTK's WordNet at {loaded.path} is version {loaded.version}, but ImageNet WNIDs are WordNet "
            f"{WORDNET_VERSION} offsets; {HOWTO}")


_NLTK_LOADED: dict[str, _NltkHierarchy] = {}


def _nltk_loaded() -> _NltkHierarchy:
    """NLTK's WordNet from the first data dir holding one, loaded once per location (any version)."""
    pointer = _find_corpus()
    key = repr(pointer)
    if key not in _NLTK_LOADED:
        location = str(getattr(pointer, "path", pointer))
        try:
            reader = _open_reader(pointer)
        except (OSError, LookupError, ValueError, AssertionError) as e:
            raise WordNetMissing(f"NLTK's WordNet at {location} does not load ({e}); {HOWTO}") from e
        _NLTK_LOADED[key] = _NltkHierarchy(reader, location)
    return _NLTK_LOADED[key]


def _nltk_data_dirs() -> list[str]:
    """NLTK's data dirs with $NLTK_DATA read now (nltk.data.path only saw it at import), in search order."""
    import nltk.data

    env = [d for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d]
    return list(dict.fromkeys(env + [str(d) for d in nltk.data.path]))


def _find_corpus() -> Any:
    """NLTK's path pointer to ``corpora/wordnet`` (a folder, or the downloader's ``wordnet.zip``)."""
    try:
        import nltk.data
    except ImportError as e:
        raise WordNetMissing(f"NLTK is not installed (`pip install nltk`); then {HOWTO}") from e
    dirs = _nltk_data_dirs()
    for resource in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):
        try:
            return nltk.data.find(resource, paths=dirs)
        except LookupError:
            continue
    raise WordNetMissing(f"NLTK's WordNet corpus is not installed (searched {', '.join(dirs)}); {HOWTO}")


@lru_cache(maxsize=1)
def _reader_class() -> type:
    """NLTK's WordNet reader minus its WordNet-3.0 sense remap (built lazily: importing NLTK takes over 1 s).

    NLTK's constructor maps WordNet 3.0 sense keys onto the loaded corpus for multilingual data by loading the
    default ``corpora/wordnet`` from ``nltk.data.path``, so a corpus given by path fails where no default one
    exists, and takes 3 s longer where one does. ImageNet only needs WordNet 3.0 itself, where that map is the
    identity, so it is skipped.
    """
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class WordNet30Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            return None

    return WordNet30Reader


def _open_reader(location: Any) -> Any:
    """An NLTK WordNet reader over ``location`` with its adjective and noun data files already open.

    NLTK checks each file against its allowed data roots when it first opens it; opening them here, while
    ``location`` is allowed, keeps the reader working if NLTK_DATA changes later.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": no OMW wanted here
        reader = _reader_class()(location, None)
        reader.get_version()
        reader.synset_from_pos_and_offset("n", int(ENTITY[1:]))
    return reader


def nltk_wordnet_status() -> dict:
    """What ``imnet-data doctor`` reports: ``{"nltk", "wordnet", "path", "hint"}``; never raises.

    ``nltk`` and ``wordnet`` are versions (None when absent), ``path`` the corpus location found, ``hint`` how to
    get what is missing ('' when the nltk backend is ready). Loads the corpus (cached) to read its version.
    """
    status: dict[str, Any] = {"nltk": None, "wordnet": None, "path": None, "hint": ""}
    try:
        import nltk

        status["nltk"] = nltk.__version__
    except ImportError:
        pass
    try:
        loaded = _nltk_loaded()  # raises WordNetMissing, with the how-to, when NLTK or its corpus is missing
        status.update(wordnet=loaded.version, path=loaded.path, hint=_version_problem(loaded))
    except Exception as e:  # a status report must describe any failure, not raise it
        status["hint"] = str(e) if isinstance(e, WordNetMissing) else f"{type(e).__name__}: {e}; {HOWTO}"
    return status


def install_wordnet(source: Path = DEBIAN_WORDNET, dest: Path | None = None) -> Path:
    """Make a WordNet 3.0 dict folder (Debian's or Princeton's) loadable by NLTK, without any download.

    Copies the dict files of ``source`` into ``<dest>/corpora/wordnet``, writes the ``lexnames`` file Debian
    lacks, checks that NLTK loads it (version 3.0, ``n01440764`` is tench) and returns ``dest``, the NLTK data
    folder. ``dest`` defaults to the first writable NLTK data dir ($NLTK_DATA, then ``~/nltk_data`` ...).
    NLTK only reads from its data dirs: if ``dest`` is not one of them, set ``NLTK_DATA=<dest>``.
    The corpus is built in a temporary folder beside the target and renamed into place, so a failed install
    leaves any previous corpus as it was; running it again replaces the corpus with an identical one.
    """
    source = Path(source)
    missing = [name for name in DICT_FILES if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{source / missing[0]} not found: {source} is not a WordNet 3.0 dict folder "
                                f"(missing {', '.join(missing)}); `apt-get install wordnet-base "
                                "wordnet-sense-index` puts one in /usr/share/wordnet")
    dest = Path(dest) if dest is not None else _default_data_dir()
    corpora = dest / "corpora"
    corpora.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-new-", dir=corpora))
    try:
        _fill_corpus(staging, source)
        _verify_corpus(staging, dest, source)
        staging.chmod(0o755)
        _swap_into_place(staging, corpora / "wordnet")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _default_data_dir() -> Path:
    """The first NLTK data dir this user can write (or create)."""
    for d in _nltk_data_dirs():
        if _writable(Path(d).expanduser()):
            return Path(d).expanduser()
    raise PermissionError(f"no writable NLTK data dir among {', '.join(_nltk_data_dirs())}; pass dest")


def _writable(path: Path) -> bool:
    """Whether ``path`` can be written, or created under its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _fill_corpus(folder: Path, source: Path) -> None:
    """Copy the dict files (no symlinks: NLTK refuses links out of its data dirs) and write ``lexnames``."""
    for name in DICT_FILES:
        shutil.copyfile(source / name, folder / name)
    lines = (f"{i:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))
    (folder / "lexnames").write_text("".join(lines), encoding="utf-8")


def _verify_corpus(folder: Path, data_dir: Path, source: Path) -> None:
    """Load ``folder`` (copied from ``source``) with NLTK and check that it is WordNet 3.0 with ImageNet's offsets."""
    with _nltk_may_read(data_dir):
        reader = _open_reader(str(folder))
    version = reader.get_version()
    tench = reader.synset_from_pos_and_offset("n", 1440764)
    if version != WORDNET_VERSION or tench is None or tench.name() != "tench.n.01":
        raise ValueError(f"the WordNet in {source} is version {version} and has {tench} at n01440764; "
                         f"ImageNet needs WordNet {WORDNET_VERSION} (tench.n.01 there)")


@contextmanager
def _nltk_may_read(data_dir: Path) -> Iterator[None]:
    """Let NLTK read under ``data_dir`` for the block (it only reads inside its data dirs)."""
    import nltk.data

    entry = str(data_dir)
    added = entry not in nltk.data.path
    if added:
        nltk.data.path.append(entry)
    try:
        yield
    finally:
        if added:
            nltk.data.path.remove(entry)


def _swap_into_place(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, replacing an existing ``target`` only once ``new`` is in place."""
    if not target.exists():
        new.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=".wordnet-old-", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        new.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old)

"""WordNet ancestry of ImageNet synsets: parents, hypernym paths, "is this class a dog?", coarse groups.

A WNID is ``n`` + the 8-digit offset of a noun in WordNet 3.0, so two backends answer the same questions:

* ``nltk``: NLTK's reader over a WordNet 3.0 corpus folder (``imnet-data wordnet --from /usr/share/wordnet``
  builds one from Debian's ``wordnet-base`` and ``wordnet-sense-index`` without any download). It covers all
  82,115 nouns and follows instance hypernyms (``Spain`` -> ``European country``) too.
* ``offline``: the image-net.org ``parent child`` is-a edges shipped with this package. They are exactly WordNet
  3.0's regular hypernym links, so they place 74,374 nouns under ``entity`` (the 1000 ILSVRC2012 classes and all
  but 4 of fall11's 21,841) but not instance nouns (places, people: ``sun``, ``Bram Stoker``), reported unknown.

Paths run from the root ``n00001740`` (entity) down to the queried WNID. Finding, opening and installing NLTK's
corpus is :mod:`imnet_data.wordnet_corpus`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from imnet_data import catalog, resources
from imnet_data.wordnet_corpus import (
    DEBIAN_WORDNET,
    DICT_FILES,
    ENTITY,
    HOWTO,
    WORDNET_VERSION,
    WordNetMissing,
    find_corpus,
    install_wordnet,
    open_reader,
)

__all__ = ["DEBIAN_WORDNET", "DICT_FILES", "ENTITY", "WORDNET_VERSION", "Hierarchy", "WordNetMissing", "hierarchy",
           "install_wordnet", "nltk_wordnet_status"]


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
    pointer = find_corpus()
    key = repr(pointer)
    if key not in _NLTK_LOADED:
        location = str(getattr(pointer, "path", pointer))
        try:
            reader = open_reader(pointer)
        except (OSError, LookupError, ValueError, AssertionError) as e:
            raise WordNetMissing(f"NLTK's WordNet at {location} does not load ({e}); {HOWTO}") from e
        _NLTK_LOADED[key] = _NltkHierarchy(reader, location)
    return _NLTK_LOADED[key]


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

"""NLTK's WordNet 3.0 corpus: where NLTK finds it, how it is opened (without NLTK's sense remap), and how
:func:`install_wordnet` builds one from Debian's ``wordnet-base`` files without any download. The hierarchy
queries over it are :mod:`imnet_data.wordnet`'s."""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

ENTITY = "n00001740"   # entity: the root of the noun hierarchy, and the synset a new reader is tried on
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


def _nltk_data_dirs() -> list[str]:
    """NLTK's data dirs with $NLTK_DATA read now (nltk.data.path only saw it at import), in search order."""
    import nltk.data

    env = [d for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d]
    return list(dict.fromkeys(env + [str(d) for d in nltk.data.path]))


def find_corpus() -> Any:
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


def open_reader(location: Any) -> Any:
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
        reader = open_reader(str(folder))
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

"""``imnet-data classes``: look up the ILSVRC2012 classes (index, WNID, devkit id, names) and their WordNet
ancestry, as a table or ``--json``."""
from __future__ import annotations

import argparse

from imnet_data import catalog
from imnet_data.cli.shared import Subparsers, _emit, _int, worked


def _class_row(c: catalog.SynsetClass) -> dict:
    """One class as a JSON row (every field the catalog has on it)."""
    return {"index": c.index, "wnid": c.wnid, "ilsvrc2012_id": c.ilsvrc2012_id, "names": list(c.names),
            "gloss": c.gloss, "train_images": c.train_images}


def _class_table(classes: list[catalog.SynsetClass]) -> str:
    """Classes as an aligned text table, one line each under a header."""
    lines = [f"{'index':>5}  {'wnid':<9}  {'id':>4}  {'train':>5}  names"]
    lines += [f"{c.index:>5}  {c.wnid:<9}  {c.ilsvrc2012_id:>4}  {c.train_images:>5}  {', '.join(c.names)}"
              for c in classes]
    return "\n".join(lines)


def _synset_label(wnid: str) -> str:
    """A synset as ``WNID  words``, the way every listing names one."""
    return f"{wnid}  {catalog.synset_words(wnid)}"


def cmd_classes(args: argparse.Namespace) -> int:
    """List, search or group the classes; or print a synset's hypernym path (``--ancestors``), the classes
    under one (``--under``), the groups at a WordNet depth (``--depth``)."""
    from imnet_data import wordnet

    cat = catalog.ilsvrc2012()
    if args.ancestors:
        path = wordnet.hierarchy(args.backend).hypernym_path(args.ancestors)
        _emit(args, [{"wnid": w, "words": catalog.synset_words(w)} for w in path],
              "\n".join("  " * depth + _synset_label(w) for depth, w in enumerate(path)))
        return 0
    if args.under:
        catalog.synset_words(args.under)  # unknown synset -> error with suggestions
        found = [cat.by_wnid(w) for w in wordnet.hierarchy(args.backend).descendants(args.under)]
        _emit(args, [_class_row(c) for c in found],
              f"{_class_table(found)}\n{len(found)} classes under {_synset_label(args.under)}")
        return 0
    if args.depth is not None:
        groups = wordnet.hierarchy(args.backend).group_at_depth(cat.wnids, args.depth)
        by_group: dict[str, list[str]] = {}
        for wnid, group in groups.items():
            by_group.setdefault(group, []).append(wnid)
        _emit(args, by_group, "\n".join(f"{len(m):>4}  {_synset_label(g)}" for g, m in sorted(by_group.items()))
              + f"\n{len(by_group)} groups at depth {args.depth}")
        return 0
    if args.query is None:
        found = list(cat)
    else:
        found = cat.search(args.query) or [cat.get(args.query)]
    _emit(args, [_class_row(c) for c in found], _class_table(found))
    return 0


def add_classes(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add ``classes``: an optional query and one of ``--ancestors``, ``--under``, ``--depth``."""
    p = sub.add_parser(
        "classes", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="look up ILSVRC2012 classes, names and WordNet ancestry",
        description="List or search the 1000 ILSVRC2012 classes (index = sorted-WNID order, id = devkit order).",
        epilog="examples:\n  imnet-data classes                       # all 1000\n"
               "  imnet-data classes terrier --json        # substring search\n"
               "  imnet-data classes 0                     # by index (also a WNID or exact name)\n"
               "  imnet-data classes --ancestors n02085620 # WordNet hypernym path\n"
               "  imnet-data classes --under n02084071     # every class under 'dog'\n"
               "  imnet-data classes --depth 4             # coarse groups at WordNet depth 4"
               + worked("imnet-data classes --ancestors n02105855    # a class of the demo's fake"))
    p.add_argument("query", nargs="?", help="index, WNID, or a name / substring to search")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ancestors", metavar="WNID", help="print the WordNet hypernym path of a synset")
    g.add_argument("--under", metavar="WNID", help="list the classes under a synset (e.g. n02084071 dog)")
    g.add_argument("--depth", type=_int(0), metavar="N", help="group the 1000 classes by their ancestor at depth N")
    p.add_argument("--backend", choices=["auto", "nltk", "offline"], default="auto",
                   help="WordNet source: NLTK's corpus, the shipped image-net.org is-a edges, or auto (default)")
    p.set_defaults(func=cmd_classes)

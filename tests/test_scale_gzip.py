"""Memory of ``shard`` from a gzipped ImageNet-21k (``winter21_whole.tar.gz``, sharded by streaming:
:mod:`imnet_data.shards.stream`) does not grow by objects per sample (issue 23): the driver's peak RSS measured at
two sizes of a fake (:mod:`imnet_data.fake.scale`), the slope between them asserted. The streaming path held Python
objects per sample (entries, lengths by locator, places, index rows): ~1,600 bytes a sample here, ~20 GB at
winter21's 13 million; it holds columns now, as the plain tar's path does. The gzip index is built beforehand (as
a re-run finds it in DEST): its build, in the driver, grows with the archive, not with the objects measured here."""
from __future__ import annotations

import os
import pickle
import pickletools
import shutil
import sys

import numpy as np
import pytest

from imnet_data import catalog
from imnet_data.bench.rss import run_tree, slope
from imnet_data.fake.scale import make_scaled_imagenet21k
from imnet_data.shards.stream import Labels
from imnet_data.shards.table import Table
from imnet_data.sources import gzindex

SIZES = (20_000, 100_000)
CLASSES = 200
PER_SHARD = 10_000        # the same shard size at both counts: what grows is the plan alone
DRIVER_SLOPE = 128        # bytes per sample: measured 55-70 (plan columns, lengths, offsets); objects took ~1,600


@pytest.fixture(scope="module")
def peaks(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, int]]:
    """(samples, driver peak) of ``shard`` of the gzipped archive at each size, its index already in DEST."""
    root = tmp_path_factory.mktemp("scale-gz")
    out = []
    for n in SIZES:
        gz = make_scaled_imagenet21k(root / f"src-{n}", n, CLASSES, release="winter21", jobs=2)
        dest, kept = root / f"out-{n}", root / f"index-{n}"
        gzindex.load_index(gz, kept, gzindex.library())
        gzindex.index_path(gz, dest).parent.mkdir(parents=True)
        shutil.copyfile(gzindex.index_path(gz, kept), gzindex.index_path(gz, dest))
        run = run_tree([sys.executable, "-m", "imnet_data", "shard", str(gz.parent), str(dest), "--jobs", "2",
                        "--samples-per-shard", str(PER_SHARD), "--quiet"], {**os.environ, "HOME": str(root)}, cwd=root)
        assert (dest / "train" / "manifest.json").is_file()
        out.append((n, run.driver))
    return out


def test_driver_memory_per_sample_of_the_gzipped_archive_is_small(peaks: list[tuple[int, int]]) -> None:
    (n1, d1), (n2, d2) = peaks
    assert slope((n1, d1), (n2, d2)) <= DRIVER_SLOPE, peaks


def test_the_labels_every_unit_job_carries_are_compact_and_built_once_per_process() -> None:
    """Each unit's job (19,167 class tars, listed and then scattered) uses the split's labels: as a dict and a
    tuple, 21k's 21,841 classes were 600 KB of ~109,000 pickle ops, ~7 ms of pickling. Their WNIDs and names
    pickle as a table's classes do (one joined string each), rebuilt once per process."""
    space, classes = catalog.label_space("imagenet21k", None, "imagenet-21k")
    labels = Labels.of(classes, space, True)
    data = pickle.dumps(labels)
    again = pickle.loads(data)
    assert again == labels and again.index["n01440764"] == labels.index["n01440764"]
    assert again.classes == list(classes) and again.names[-1] == labels.names[-1]
    assert pickle.loads(data) is again        # rebuilt once per process, not per job
    assert sum(1 for _ in pickletools.genops(data)) < 1_000 and len(data) < 500_000


def test_a_units_rows_taken_from_a_21k_plan_pickle_their_classes_as_one_string() -> None:
    """Each unit's scatter job carries its rows taken from the plan (:meth:`Table.take`), which keep the plan's
    whole class list: 21k's 21,841 WNIDs pickled as a list were 263 KB of ~44,000 pickle ops and ~6 ms to pickle
    and unpickle, for each of 19,167 class tars (the driver pickles them all). One string now, the list made once
    per process; the labels (the ``wnid`` column indexes the classes) and entries come back the same."""
    space, classes = catalog.label_space("imagenet21k", None, "imagenet-21k")
    n = 3
    plan = Table.build({"keys": np.array([b"a", b"b", b"c"]), "wnid": np.array([0, 5, 21_840], np.int32),
                        "place": np.zeros(n, np.int32), "offset": np.arange(n, dtype=np.int64),
                        "size": np.full(n, 9, np.uint32), "ext": np.zeros(n, np.uint8)},
                       list(classes), [("stream", "/x.tar.gz", "n0.tar/", 0)], [".JPEG"])
    rows = plan.take(np.array([1, 2]))
    data = pickle.dumps(rows)
    again = pickle.loads(data)
    assert again.classes == list(classes) and again.wnid.tolist() == [5, 21_840]
    assert [again.entry(i) for i in range(2)] == [plan.entry(i) for i in (1, 2)]
    assert sum(1 for _ in pickletools.genops(data)) < 1_000 and len(data) < 230_000


def test_classes_with_none_and_empty_names_pickle_back_as_they_were() -> None:
    """A unit's listing may hold None (no class) among its classes; the joined form keeps it apart from ``""``."""
    for classes in ([], [None], [""], ["n1", None, ""], [None, "n2"]):
        table = Table.of([], str)
        table.classes = classes
        assert pickle.loads(pickle.dumps(table)).classes == classes

"""Memory of ``shard`` does not grow with the sample count (issue 23): the driver's and the largest worker's peak
RSS measured at two sizes of a fake ImageNet-21k (:mod:`imnet_data.fake.scale`), the slope between them asserted.
Memory is a count, not a time: the check holds on a loaded machine too."""
from __future__ import annotations

import os
import pathlib
import sys

import pytest

from imnet_data.bench.rss import run_tree, slope
from imnet_data.fake.scale import make_scaled_imagenet21k

SIZES = (40_000, 200_000)
CLASSES = 500
PER_SHARD = 10_000        # the same shard size at both counts: what grows is the plan alone
DRIVER_SLOPE = 64         # bytes per sample; the plan of one object per sample took ~550 here
WORKER_SLOPE = 128        # a worker holds its shard's rows only: ~0 growth, measured 26 (a few MB of noise over
                          # 160,000 samples is ~30); the plan of one object per sample cost each worker ~510
FAKE_DRIVER = 150 << 20   # the fake maker's peak RSS, bytes (~90 MB: Python, numpy, PIL and a few inner tars)


@pytest.fixture(scope="module")
def peaks(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, int, int]]:
    """(samples, driver peak, largest worker peak) of ``shard`` at each size."""
    root = tmp_path_factory.mktemp("scale")
    out = []
    for n in SIZES:
        src = make_scaled_imagenet21k(root / f"src-{n}", n, CLASSES, release="fall11", jobs=1).parent
        run = run_tree([sys.executable, "-m", "imnet_data", "shard", str(src), str(root / f"out-{n}"), "--jobs", "2",
                        "--samples-per-shard", str(PER_SHARD), "--quiet"], {**os.environ, "HOME": str(root)}, cwd=root)
        assert len(run.workers) >= 2, run
        out.append((n, run.driver, run.worker_max))
    return out


def test_driver_memory_per_sample_is_at_most_64_bytes(peaks: list[tuple[int, int, int]]) -> None:
    (n1, d1, _), (n2, d2, _) = peaks
    assert slope((n1, d1), (n2, d2)) <= DRIVER_SLOPE, peaks


def test_worker_memory_does_not_grow_with_the_count(peaks: list[tuple[int, int, int]]) -> None:
    (n1, _, w1), (n2, _, w2) = peaks
    assert slope((n1, w1), (n2, w2)) <= WORKER_SLOPE, peaks


def test_making_the_fake_does_not_queue_the_archive_in_memory(tmp_path: pathlib.Path) -> None:
    """The fake's writer (one process, gzip) is slower than the workers building inner tars: the workers run at most
    a few tars ahead, so its memory stays far below the archive's ~200 MB of tar (unbounded, it held most of it)."""
    made = tmp_path / "w21"
    run = run_tree([sys.executable, "-c", "import sys; from imnet_data.fake.scale import make_scaled_imagenet21k; "
                    "make_scaled_imagenet21k(sys.argv[1], 200_000, 200, release='winter21', jobs=2)", str(made)],
                   {**os.environ, "HOME": str(tmp_path)}, cwd=tmp_path)
    assert (made / "winter21_whole.tar.gz").stat().st_size > 0
    assert run.driver < FAKE_DRIVER, run

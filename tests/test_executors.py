"""Executors behind one registry (:data:`imnet_data.executors.EXECUTORS`): a toy executor added with one entry
runs ``shard`` through the CLI, byte-identical to the local one; a local run imports neither Ray nor its
connection, and a command without units not even the process pool."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from imnet_data.errors import UsageError
from imnet_data.executors import EXECUTORS, Kind, executing
from imnet_data.executors.local import LocalExecutor
from imnet_data.fake import FakeOptions, FakeResult, make_fake
from imnet_data.parallel import default_jobs, map_units
from tests.helpers import ROOT, run_cli
from tests.test_shard import files

T = TypeVar("T")
R = TypeVar("R")
TOY = Kind("tests.test_executors:reversed_executor", "every unit in this process, the last first")
REGISTERED = ("import sys; from imnet_data.executors import EXECUTORS, Kind; "
              f"EXECUTORS['reversed'] = Kind({TOY.factory!r}, {TOY.about!r}); "
              "from imnet_data.cli import main; sys.exit(main(sys.argv[1:]))")


class Reversed:
    """A toy executor: every unit in this process, the last one first; the results handed back in unit order."""

    def workers(self) -> int:
        """Three, as if it had three workers (``--jobs 0``)."""
        return 3

    def map(self, fn: Callable[[T], R], items: Sequence[T], jobs: int | None, ahead: int | None) -> Iterator[R]:
        """Every unit run now, backwards; says so on stdout (which the CLI sends to stderr)."""
        results = [fn(item) for item in reversed(items)][::-1]
        print(f"reversed: {len(items)} units, the last first")
        return iter(results)

    def check_visible(self, reads: Sequence[Path], writes: Sequence[Path]) -> None:
        """Nothing to check: the units run in this process."""


@contextlib.contextmanager
def reversed_executor(address: str | None) -> Iterator[Reversed]:
    """The toy's factory, as the registry calls it."""
    yield Reversed()


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    """``python -c CODE ARGS`` from the repository root (``tests`` importable), its text output captured."""
    return subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def registered_cli(*args: str) -> subprocess.CompletedProcess:
    """``imnet-data ARGS`` in a subprocess whose registry has one more entry, ``reversed`` (:class:`Reversed`)."""
    return python(REGISTERED, *args)


def without_timing(split: dict) -> dict:
    """A split's report less what differs between two runs into two folders (its seconds, the manifest's path)."""
    return {key: value for key, value in split.items() if key not in ("seconds", "manifest")}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> FakeResult:
    """A small fake download."""
    return make_fake(tmp_path_factory.mktemp("executors") / "src", FakeOptions(classes=6, train_per_class=5,
                                                                               val_images=12, seed=5), quiet=True)


def test_a_toy_executor_added_with_one_registry_entry_shards_byte_identical(fake: FakeResult,
                                                                              tmp_path: Path) -> None:
    """One entry in EXECUTORS and the CLI offers it (choice and help) and runs shard's units on it; the output is
    the local executor's, byte for byte, though the units ran backwards in one process."""
    helped = registered_cli("shard", "--help")
    assert helped.returncode == 0 and "{local,ray,reversed}" in helped.stdout
    assert "reversed: every unit in this process, the last first" in " ".join(helped.stdout.split())
    options = ["--samples-per-shard", "4", "--quiet", "--json"]
    toy = registered_cli("shard", str(fake.out), str(tmp_path / "toy"), "--executor", "reversed", *options)
    assert toy.returncode == 0, toy.stderr
    assert "reversed: 8 units, the last first" in toy.stderr      # the train shards: the toy ran them
    local = run_cli("shard", str(fake.out), str(tmp_path / "local"), "--jobs", "2", *options)
    assert local.returncode == 0, local.stderr
    assert files(tmp_path / "toy") == files(tmp_path / "local")
    assert [without_timing(s) for s in json.loads(toy.stdout)["splits"]] == \
        [without_timing(s) for s in json.loads(local.stdout)["splits"]]


def test_every_registry_entry_names_a_factory() -> None:
    """Each entry's ``module:function`` imports and is callable (a typo in the registry fails here)."""
    assert all(callable(kind.load()) for kind in EXECUTORS.values())


def test_the_library_runs_units_on_the_executor_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """``executing(name)`` looks the name up in the registry; inside, map_units and default_jobs ask that
    executor; an unknown name is a usage error naming the choices."""
    monkeypatch.setitem(EXECUTORS, "reversed", TOY)
    with executing("reversed") as executor:
        assert isinstance(executor, Reversed)
        assert list(map_units(str, [1, 2, 3], quiet=True)) == ["1", "2", "3"]
        assert default_jobs(0) == 3 and default_jobs(5) == 5
        with executing("local") as inner:                         # the innermost block's executor
            assert isinstance(inner, LocalExecutor) and default_jobs(0) == inner.workers()
    with pytest.raises(UsageError, match="executor must be one of local, ray, reversed, got 'dask'"), \
            executing("dask"):
        pass


class Counted:
    """What every item shares, counting how often this process pickles it."""

    pickled = 0

    def __reduce__(self) -> tuple:
        Counted.pickled += 1
        return Counted, ()


def doubled(shared: Counted, item: int) -> int:
    """A unit's work, given what the units share first."""
    return 2 * item


def test_the_local_pool_sends_the_function_once_per_worker_not_with_every_item() -> None:
    """What the items share is bound into the function (a split's 21,841 labels, 465 KB): the pool hands it to
    each worker once (a forked one inherits it), each item alone; it was pickled and piped with every item, for
    each of 19,167 units, twice (measure, scatter)."""
    Counted.pickled = 0
    assert list(map_units(partial(doubled, Counted()), list(range(40)), jobs=2, quiet=True)) == \
        [2 * i for i in range(40)]
    assert Counted.pickled <= 2


LOADED = ("import sys; from imnet_data.cli import main; status = main(sys.argv[1:]); "
          "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'imnet_data.executors.'))), "
          "file=sys.stderr); sys.exit(status)")


def test_a_local_run_imports_neither_ray_nor_its_connection(fake: FakeResult, tmp_path: Path) -> None:
    """shard on the local executor loads the process pool only; ``classes`` (no units) not even that."""
    done = python(LOADED, "shard", str(fake.out), str(tmp_path / "dest"), "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == \
        "['imnet_data.executors.base', 'imnet_data.executors.local', 'imnet_data.executors.tokens']"
    done = python(LOADED, "classes", "n01440764")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "['imnet_data.executors.base']"

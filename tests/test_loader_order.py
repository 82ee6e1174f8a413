"""``order="global"`` on real shards of a fake download: one permutation of the split per epoch whatever the
world size, resumed on another world size with every sample of the epoch seen exactly once, and a state from
another split, seed or dataset version refused naming what differs."""
from __future__ import annotations

from pathlib import Path

import pytest

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.shards import ShardOptions, shard

torch = pytest.importorskip("torch", reason="the loader yields torch tensors: pip install torch")
from imnet_data.loader import build_loader  # noqa: E402
from tests.test_loader import truth  # noqa: E402

COMMON = {"backend": "torch", "device": "cpu", "num_threads": 0, "image_size": 16, "seed": 7, "shuffle_window": 2}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("order")
    src = make_fake(root / "src", FakeOptions(classes=5, train_per_class=21, val_images=10, seed=2), quiet=True)
    shard(src.out, root / "shards", ShardOptions(samples_per_shard=8), quiet=True)     # 105 samples, 14 shards
    return root / "shards"


def ranks(source: Path, world: int, **settings) -> list:
    return [build_loader(source, "train", rank=r, world_size=world, **{**COMMON, **settings}) for r in range(world)]


def sequence(loaders: list) -> list[str]:
    """The remaining batches of every rank, read as the global sequence: step by step, rank by rank, pads out."""
    per_rank = [[ld.keys(b) for b in ld.positions()] for ld in loaders]
    return [k for step in zip(*per_rank, strict=True) for batch in step for k in batch if k is not None]


def test_the_global_order_is_the_same_for_every_world_size(shards: Path) -> None:
    everything = sorted(truth(shards / "train"))
    orders = {}
    for world in (1, 2, 3, 4):
        loaders = ranks(shards, world, batch_size=4, remainder="pad")
        assert len({len(ld) for ld in loaders}) == 1            # every rank the same number of batches
        orders[world] = sequence(loaders)
        assert sorted(orders[world]) == everything              # a permutation: every sample exactly once
        for ld in loaders:
            ld.set_epoch(1)
        assert sorted(sequence(loaders)) == everything and sequence(loaders) != orders[world]   # a new one
    assert orders[1] == orders[2] == orders[3] == orders[4]
    drop = sequence(ranks(shards, 3, batch_size=4))             # drop (train default): the same, its tail cut
    assert drop == orders[1][:len(drop)] and len(orders[1]) - len(drop) < 3 * 4


def test_the_permutation_keeps_reads_within_a_window_of_shards(shards: Path) -> None:
    (loader,) = ranks(shards, 1, batch_size=105, remainder="partial", shuffle_window=3)
    (positions,) = loader.positions()
    counts, runs, left, current = loader.shards.counts, [], 0, set()
    for s in loader.index.shard_of(positions).tolist():     # cut where every shard begun is read to its end
        if s not in current:
            current.add(s)
            left += int(counts[s])
        left -= 1
        if not left:
            runs.append(current)
            current = set()
    assert len(runs) == 5 and [len(r) for r in runs] == [3, 3, 3, 3, 2]    # 14 shards, 3 at a time


@pytest.mark.parametrize("after", [3, 2, 5])
def test_a_resize_resume_sees_every_sample_exactly_once(shards: Path, after: int) -> None:
    want = truth(shards / "train")
    before = ranks(shards, 4, batch_size=3, remainder="pad")                     # 9 global batches of 12
    steps = round(0.37 * len(before[0]))
    seen = []
    for loader in before:                                                        # 37% of the epoch, really read
        batches = iter(loader)
        for step in range(steps):
            _, labels = next(batches)
            keys = loader.batch_keys(step)
            assert labels.tolist() == [want[k] if k else -1 for k in keys]
            seen += [k for k in keys if k]
    state = before[0].state_dict()
    assert state["position"] == steps * 12 and state["world_size"] == 4
    resumed = ranks(shards, after, batch_size=3, remainder="pad")
    rest = []
    for loader in resumed:
        loader.load_state_dict(state)
        for step, (_, labels) in enumerate(loader):
            keys = loader.batch_keys(step)
            assert labels.tolist() == [want[k] if k else -1 for k in keys]
            rest += [k for k in keys if k]
    assert sorted(seen + rest) == sorted(want)                                   # every sample exactly once
    assert all(ld.state_dict()["epoch"] == 1 and ld.state_dict()["origin"] == 0 for ld in resumed)
    whole = sequence(ranks(shards, 1, batch_size=3, remainder="pad"))
    assert sorted(seen) == sorted(whole[:len(seen)])                              # the same global order...
    for loader in resumed:
        loader.load_state_dict(state)
    assert sequence(resumed) == whole[len(seen):]                                 # ... continued


def test_a_state_of_another_split_seed_or_dataset_version_is_refused_naming_it(shards: Path, tmp_path: Path) -> None:
    (loader,) = ranks(shards, 1, batch_size=4)
    state = loader.state_dict()
    (other_seed,) = ranks(shards, 1, batch_size=4, seed=8)
    with pytest.raises(ValueError, match=r"differs in seed 7 -> 8; cannot resume"):
        other_seed.load_state_dict(state)
    val = build_loader(shards, "val", batch_size=4, **COMMON)
    with pytest.raises(ValueError, match=r"differs in split 'train' -> 'val'"):
        val.load_state_dict(state)
    src = make_fake(tmp_path / "src", FakeOptions(classes=5, train_per_class=21, val_images=10, seed=3), quiet=True)
    shard(src.out, tmp_path / "v2", ShardOptions(samples_per_shard=8), quiet=True)     # another dataset version
    (v2,) = ranks(tmp_path / "v2", 1, batch_size=4)
    with pytest.raises(ValueError, match=rf"differs in manifest '{state['manifest']}' -> '[0-9a-f]{{64}}'"):
        v2.load_state_dict(state)
    (local,) = ranks(shards, 1, batch_size=4, order="local")
    with pytest.raises(ValueError, match=r"differs in order 'global' -> 'local'"):
        local.load_state_dict(state)
    two = ranks(shards, 2, batch_size=4, order="local")
    with pytest.raises(ValueError, match=r"order='local' resumes on the same world size only"):
        two[0].load_state_dict(local.state_dict())

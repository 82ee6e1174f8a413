"""End to end (``imnet-data bench --model``): SGD steps of a torchvision model on one GPU-resident batch (the
model's ceiling), then fed by the loader and by plain DALI on the same shards."""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from imnet_data.bench.peers import plain_dali
from imnet_data.bench.rows import Row, cuda, limited, measured
from imnet_data.loader import build_loader


def model_feeds(train: Path, batch_size: int, threads: int, device_id: int | None, image_size: int,
                **settings: Any) -> dict[str, Iterator]:
    """What :func:`model_rows` trains on beside its resident batch: the loader (built with ``settings``) and
    plain DALI, endless, on the same shards."""
    loader = build_loader(train, batch_size=batch_size, image_size=image_size, num_threads=threads,
                          device="cpu" if device_id is None else "cuda", **settings)
    return {"the loader": limited(loader),
            "plain DALI": plain_dali(train, batch_size, threads, device_id, image_size=image_size)}


def model_rows(model_name: str, feeds: Mapping[str, Iterable], batch_size: int, steps: int,
               seconds: float | None = None) -> Iterator[Row]:
    """SGD steps of a torchvision model (bf16 autocast, channels_last) on one resident batch (the model's
    ceiling), then fed by each of ``feeds`` (name -> iterable of ``(images, labels)`` on the model's device);
    a row each, measured as it is asked for. On a CPU (the dry run) the same steps run with CPU autocast."""
    import torch
    import torchvision

    device = "cuda" if cuda() else "cpu"
    model = getattr(torchvision.models, model_name)().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step; its loss."""
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)),
                                                     y.clamp(min=0) % 1000)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    x, y = next(iter(next(iter(feeds.values()))))
    yield measured(f"{model_name} on one resident batch", batch_size, (step(x, y) for _ in range(steps + 10)), 10,
                   "the model's ceiling", seconds)
    for name, feed in feeds.items():
        yield measured(f"{model_name} fed by {name}", batch_size,
                       (step(a, b) for a, b in itertools.islice(feed, steps + 10)), 10, "", seconds)

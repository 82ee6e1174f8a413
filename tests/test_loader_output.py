"""The DALI CPU training path's host steps (imnet_data/loader/output.py) on real shards and real DALI pipelines:
the pixels are an antialiased resize of the crop (flipped or not), every layout holds the same pixels, and the
pooled output buffers never overwrite a batch that something still refers to."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imnet_data.fake import FakeOptions, make_fake
from imnet_data.loader import build_loader
from imnet_data.loader.output import BufferPool
from imnet_data.shards import ShardOptions, shard

torch = pytest.importorskip("torch", reason="the loader yields torch tensors: pip install torch")
pytest.importorskip("nvidia.dali", reason="DALI not installed: pip install nvidia-dali-cuda130")
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("output")
    src = make_fake(root / "src", FakeOptions(classes=4, train_per_class=8, val_images=4, seed=7), quiet=True)
    shard(src.out, root / "shards", ShardOptions(samples_per_shard=8), quiet=True)
    return root / "shards" / "train"


def train_loader(shards: Path, **settings):
    return build_loader(shards, "train", 8, backend="dali", device="cpu", num_threads=2, image_size=64, **settings)


def test_train_pixels_are_an_antialiased_resize_of_the_crop_flipped_or_not(shards: Path) -> None:
    """With the crop forced to the whole image (scale 1 and a ratio range every image fits: DALI takes the whole
    image, or one row or column less where its rounding of the drawn ratio fits), each image is that crop resized
    to 64 x 64 with antialiasing (torch's bilinear, antialias=True: what torchvision's RandomResizedCrop does) and
    normalised, flipped for some of them; DALI's decoder and PIL's give the same pixels here, and the rest is the
    rounding of the resize to uint8."""
    loader = train_loader(shards, scale=(1.0, 1.0), ratio=(0.2, 5.0), layout="NHWC")
    batches = loader.positions()
    flipped = []
    for positions, (images, labels) in zip(batches, loader, strict=True):
        assert images.shape == (8, 64, 64, 3) and images.dtype == torch.float32 and labels.shape == (8,)
        for p, image, label in zip(positions.tolist(), images.numpy(), labels.tolist(), strict=True):
            data, want, _ = loader.reader.sample(p)
            assert label == want
            rgb = np.asarray(Image.open(io.BytesIO(data.tobytes())).convert("RGB"))
            crops = [rgb, rgb[1:], rgb[:-1], rgb[:, 1:], rgb[:, :-1]]
            refs = [resized(crop) for crop in crops]
            plain, mirrored = (min(np.abs(image - r).mean() for r in rs) for rs in (refs, [r[:, ::-1] for r in refs]))
            assert min(plain, mirrored) < 0.01, (p, plain, mirrored)   # ~0.6 of 255
            flipped.append(mirrored < plain)
    assert 0 < sum(flipped) < len(flipped)


def resized(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` resized to 64 x 64 (bilinear, antialiased, in float) and normalised."""
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True)[0].permute(1, 2, 0)
    return (x.numpy() / 255 - MEAN) / STD


def test_every_layout_and_dtype_holds_the_same_pixels(shards: Path) -> None:
    """Same seed, same crops: NHWC, channels_last and NCHW float32 are the same values; uint8 normalised by hand
    is the float32 batch; float16 and bfloat16 are it rounded."""
    first = {name: next(iter(train_loader(shards, layout=layout, dtype=dtype)))[0]
             for name, layout, dtype in (("nhwc", "NHWC", "float32"), ("cl", "channels_last", "float32"),
                                         ("nchw", "NCHW", "float32"), ("u8", "NHWC", "uint8"),
                                         ("f16", "channels_last", "float16"), ("bf16", "NCHW", "bfloat16"))}
    nhwc = first["nhwc"]
    assert first["cl"].shape == first["nchw"].shape == (8, 3, 64, 64)
    assert first["cl"].is_contiguous(memory_format=torch.channels_last) and first["nchw"].is_contiguous()
    assert torch.equal(first["cl"], nhwc.permute(0, 3, 1, 2)) and torch.equal(first["nchw"], first["cl"])
    by_hand = (first["u8"].numpy() / 255 - MEAN) / STD
    assert first["u8"].dtype == torch.uint8 and np.abs(by_hand - nhwc.numpy()).max() < 1e-4
    assert first["f16"].dtype == torch.float16 and torch.allclose(first["f16"].float(), first["cl"], atol=1e-2)
    assert first["bf16"].dtype == torch.bfloat16 and torch.allclose(first["bf16"].float(), first["nchw"], atol=3e-2)


def test_a_kept_batch_is_never_overwritten_and_a_dropped_ones_buffer_is_reused(shards: Path) -> None:
    """The loader's batches come from reused buffers, yet every batch (or view of one) the caller keeps stays as
    it was while later batches are made."""
    kept, copies = [], []
    for step, (images, _) in enumerate(train_loader(shards, layout="channels_last")):
        if step % 2 == 0:
            kept.append(images[1:] if step % 4 else images)   # a view keeps the whole buffer
            copies.append(kept[-1].clone())
    assert len(kept) == 2
    for batch, copy in zip(kept, copies, strict=True):
        assert torch.equal(batch, copy)

    pool = BufferPool(keep=3)
    a = pool.take((2, 3), torch.float32)
    pointer = a.data_ptr()
    view = a[1:]
    del a
    b = pool.take((2, 3), torch.float32)
    assert b.data_ptr() != pointer                  # a view of the first still lives
    del view, b
    assert pool.take((2, 3), torch.float32).data_ptr() == pointer   # nothing refers to it any more
    held = [pool.take((2, 3), torch.float32) for _ in range(4)]
    assert len({t.data_ptr() for t in held}) == 4 and len(pool.arrays) == 3

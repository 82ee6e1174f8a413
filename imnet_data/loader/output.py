"""Batches out to torch on the host: a uint8 ``[B, H, W, 3]`` batch converted to the options' dtype, layout and
normalisation (:class:`Output`), into output buffers that are reused (:class:`BufferPool`); and the last steps of
the DALI CPU training path (:func:`resize_into`): each decoded (and flipped) crop resized into the batch.

Why these steps run here and not in DALI or per channel (measured on the CPU, 2 cores, ``tools/bench_ffcv.py``):

* DALI's CPU resize is a generic resampler that is not vectorised (~0.63 ms an image to 224 px, a third of the
  loader's time); torch's uint8 bilinear kernel (SIMD, channels_last) does the *antialiased* resize (the same as
  torchvision's ``RandomResizedCrop`` and PIL's) in ~0.27 ms.
* A fresh 38 MB float batch per step faults in every page (~10% of the time); a pooled buffer is written warm.
* Normalising an HWC batch with a per-channel ``(3,)`` broadcast runs an inner loop of 3 (~0.5 ms an image);
  over rows of ``W * 3`` values with the scale and shift tiled along the row it is ~0.1 ms (:func:`normalise`).

Buffer lifetime: a batch stays valid for as long as anything refers to it (the tensor, a view of it, a
``.numpy()`` of it). The pool reuses a buffer only when nothing but the pool refers to it; a batch the user keeps
is never overwritten (the pool makes a new buffer instead).
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from imnet_data.loader.base import LoaderOptions

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "uint8": torch.uint8}
STORED = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.int16, torch.uint8: np.uint8,
          torch.int64: np.int64}
FREE = 2     # sys.getrefcount of a pooled array only the pool holds: the pool's list and the call's argument


class BufferPool:
    """Output arrays handed out as torch tensors and reused once nothing else refers to them. A tensor made with
    ``torch.from_numpy`` holds its array until it (and every view of it) is gone, so an array that only the pool
    holds is free. At most ``keep`` arrays are kept: when none is free (the user keeps batches), a new one is made
    and the pool forgets its oldest."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self.arrays: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised ``shape`` tensor of ``dtype``: a free pooled buffer, else a new one."""
        stored = np.dtype(STORED[dtype])
        shape = tuple(shape)
        for i in range(len(self.arrays)):
            if self.arrays[i].shape == shape and self.arrays[i].dtype == stored \
                    and sys.getrefcount(self.arrays[i]) == FREE:
                return torch.from_numpy(self.arrays[i]).view(dtype)
        array = np.empty(shape, stored)
        self.arrays = [*self.arrays[max(0, len(self.arrays) + 1 - self.keep):], array]
        return torch.from_numpy(array).view(dtype)


class Output:
    """uint8 ``[B, H, W, 3]`` to the options' device, dtype (normalised unless uint8) and layout (picklable); into
    ``pool``'s buffers when given (CPU output), else into new ones."""

    def __init__(self, options: LoaderOptions, device: torch.device, pool: BufferPool | None = None) -> None:
        self.options, self.device, self.pool = options, device, pool
        # (x / 255 - mean) / std as x * scale + shift, per channel
        mean, std = torch.tensor(options.mean), torch.tensor(options.std)
        self.scale, self.shift = (1 / (255 * std)).to(device), (-mean / std).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The converted batch; in a DataLoader worker it is made in shared memory, so handing it to the loader
        copies nothing."""
        x = images.to(self.device, non_blocking=True)
        out = self.empty(*x.shape[:3])
        self.into(x, out)
        return self.view(out)

    def empty(self, b: int, h: int, w: int) -> torch.Tensor:
        """An output buffer for ``b`` images of ``h x w`` in the layout's memory order (HWC for NHWC and
        channels_last, CHW for NCHW): pooled, or new (in shared memory in a DataLoader worker)."""
        shape, dtype = ((b, h, w, 3) if self.options.layout != "NCHW" else (b, 3, h, w)), DTYPES[self.options.dtype]
        out = self.pool.take(shape, dtype) if self.pool else torch.empty(shape, dtype=dtype, device=self.device)
        if torch.utils.data.get_worker_info() is not None:
            out.share_memory_()
        return out

    def into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """uint8 ``x`` ``[b, h, w, 3]`` converted into ``out`` (from :meth:`empty`, or a slice of one)."""
        hwc, w = self.options.layout != "NCHW", x.shape[2]
        if out.dtype == torch.uint8:
            out.copy_(x if hwc else x.permute(0, 3, 1, 2))
            return
        work = out if out.dtype == torch.float32 else torch.empty(out.shape, device=self.device)
        if hwc:    # rows of w * 3 values, the per-channel factors tiled along the row: a long inner loop
            normalise(work.view(-1, w * 3), x.reshape(-1, w * 3), self.scale.repeat(w), self.shift.repeat(w))
        else:
            normalise(work, x.permute(0, 3, 1, 2), self.scale.view(3, 1, 1), self.shift.view(3, 1, 1))
        if work is not out:
            out.copy_(work)

    def view(self, out: torch.Tensor) -> torch.Tensor:
        """The batch as the layout shows it (channels_last: the NCHW view of the HWC memory)."""
        return out.permute(0, 3, 1, 2) if self.options.layout == "channels_last" else out


def normalise(out: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """``out = x * scale + shift`` (float32 ``out``, uint8 ``x``). On the CPU with numpy: single-threaded, so
    it never opens a parallel region whose threads wait for cores that DALI's threads (or the training step)
    hold; ~0.12 ms an image at 224 px, against ~0.5 ms for torch on a loaded 2-core machine."""
    if out.device.type != "cpu":
        out.copy_(x).mul_(scale).add_(shift)
        return
    o = out.numpy()
    np.copyto(o, x.numpy(), casting="unsafe")
    np.multiply(o, scale.numpy(), out=o)
    np.add(o, shift.numpy(), out=o)


def resize_into(crops: list[np.ndarray], batch: torch.Tensor) -> torch.Tensor:
    """Each uint8 HWC crop resized to the uint8 ``batch``'s ``H x W`` (``[B, H, W, 3]``; bilinear, antialiased
    when shrinking: torch's SIMD uint8 kernel on channels_last); returns ``batch``. Each crop is resized straight
    into its slot (``out=``): a per-image torch copy would open a parallel region per image, which costs
    milliseconds each on a busy machine (the threads wait for one another)."""
    size = list(batch.shape[1:3])
    for i, crop in enumerate(crops):      # HWC memory as a channels_last [1, 3, h, w] view, in and out
        torch.ops.aten._upsample_bilinear2d_aa.out(torch.from_numpy(crop).permute(2, 0, 1)[None], size, False,
                                                   out=batch[i].permute(2, 0, 1)[None])
    return batch

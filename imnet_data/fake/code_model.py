"""A stand-in model for checking an evaluation end to end on the fake evaluation sets: it reads the two class
indices each fake image carries (:mod:`imnet_data.fake.coded`) and answers with them, so the accuracy a scorer
reports can be computed exactly from the fake's truth.

``tools/evaluate_imagenet.py --model imnet_data.fake.code_model:CodeReader`` scores it like any model.
"""
from __future__ import annotations

import torch

from imnet_data.fake.coded import BITS, GRID

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PITCH = 0.15     # a code cell in the crop, of its side: 0.7 / 5 of the resized shorter side, which the val crop
                 # (crop_pct 0.875 .. 1) makes 0.14 .. 0.16 of the crop; the middle misses no cell centre by much


class CodeReader(torch.nn.Module):
    """Logits of 2 for the first class the fake drew, 1 for the second, and a small descending ramp for every
    other class (ties never decide: top-5 and the fallback under a class mask are fixed). ``data_config`` is
    its preprocessing, as timm models carry it."""

    data_config = {"input_size": (3, 224, 224), "crop_pct": 0.875, "interpolation": "bilinear", "mean": MEAN,
                   "std": STD}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 1000]`` logits of normalised ``[B, 3, H, W]`` images."""
        primary, secondary = read_codes(images)
        logits = torch.arange(1000, 0, -1, dtype=torch.float32, device=images.device).repeat(len(images), 1) * 1e-4
        rows = torch.arange(len(images), device=images.device)
        logits[rows, secondary.clamp(0, 999)] += 1
        logits[rows, primary.clamp(0, 999)] += 2
        return logits


def read_codes(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two class indices coded in each image of a normalised ``[B, 3, H, W]`` batch (a cell is white when
    its centre's channels sum above 0, the normalised mean)."""
    _, _, height, width = images.shape
    pitch, reach = PITCH * min(height, width), max(1, round(0.03 * min(height, width)))
    bits = []
    for k in range(2 * BITS):
        row, col = divmod(k, GRID)
        y = round((height - 1) / 2 + (row - GRID // 2) * pitch)
        x = round((width - 1) / 2 + (col - GRID // 2) * pitch)
        patch = images[:, :, y - reach:y + reach + 1, x - reach:x + reach + 1].float()
        bits.append((patch.sum(1).mean((-1, -2)) > 0).long())
    weights = torch.tensor([1 << (BITS - 1 - i) for i in range(BITS)], device=images.device)
    stacked = torch.stack(bits, 1)
    return (stacked[:, :BITS] * weights).sum(1), (stacked[:, BITS:] * weights).sum(1)

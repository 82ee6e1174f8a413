"""``ShardOptions``: everything that decides a shard set's bytes, recorded in its plan and manifest."""
from __future__ import annotations

from dataclasses import dataclass

from imnet_data.errors import UsageError
from imnet_data.variants import variant


@dataclass(frozen=True)
class ShardOptions:
    """Everything that decides the shards' bytes (recorded in the plan and the manifest)."""

    name: str | None = None               # file name prefix; default by layout (imagenet-1k, ...)
    seed: int = 0
    shuffle: bool | None = None           # None: shuffle train, keep val in key order
    samples_per_shard: int | None = None  # else cut by shard_size
    shard_size: int = 1_000_000_000       # target bytes per shard
    max_size: int | None = None           # resize so the longer side is at most this
    short_side: int | None = None         # resize so the shorter side is at most this
    quality: int | None = None            # re-encode quality (default 90 when resizing)
    classes: tuple[str, ...] | None = None
    subset: str | None = None             # 1percent, 10percent, or a file of train file names
    fix: bool = True                      # CMYK / PNG / other formats -> RGB JPEG
    label_space: str | None = None        # a catalog.LABEL_SPACES name; None: the layout's (the plan records it)
    variant: str | None = None            # a named 21k variant (imnet_data.variants): classes, val split, resize
    squish: int | None = None             # resize to squish x squish (aspect not kept) when the longer side is larger

    def __post_init__(self) -> None:
        """UsageError naming the first option out of range."""
        for name, low, high in (("samples_per_shard", 1, None), ("shard_size", 1, None), ("max_size", 1, None),
                                ("short_side", 1, None), ("quality", 1, 100), ("squish", 1, None)):
            value = getattr(self, name)
            if value is not None and not (low <= value and (high is None or value <= high)):
                span = f"{low}..{high}" if high else f"{low} or more"
                raise UsageError(f"{name.replace('_', '-')} must be {span}, got {value}")
        if self.variant is not None:
            variant(self.variant)   # UnknownClassError (a usage error) for a name that is none

    def shuffles(self, split: str) -> bool:
        """Whether ``split`` is shuffled: ``shuffle`` when given, else train only."""
        return self.shuffle if self.shuffle is not None else split == "train"

    def reencodes(self) -> bool:
        """Whether images are re-encoded (a size cap or a quality given)."""
        return bool(self.max_size or self.short_side or self.quality or self.squish)

"""A faithful miniature of the registered ImageNet ILSVRC2012 download (``imnet-data fake OUT``).

Same archive names and byte formats as the real files (nested train tar, flat val tar, devkit with a real-layout
``meta.mat``, optional bbox archives and Kaggle layout), so validate, organize, shard and the loaders can be
tested and demonstrated without ImageNet; ``truth`` says what every file is. Other layouts' fakes are listed in
:data:`imnet_data.fake.layouts.FAKE_LAYOUTS`.

The names below are imported when first used, so importing a submodule (the command line reads
:mod:`imnet_data.fake.layouts` for ``fake --layout``'s choices) does not load the image code.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imnet_data.fake.make import make_fake
    from imnet_data.fake.options import FakeOptions, FakeResult
    from imnet_data.fake.truth import write_truth

_WHERE = {"make_fake": "imnet_data.fake.make", "FakeOptions": "imnet_data.fake.options",
          "FakeResult": "imnet_data.fake.options", "write_truth": "imnet_data.fake.truth"}


def __getattr__(name: str) -> Any:
    """``make_fake``, ``FakeOptions``, ``FakeResult``, ``write_truth``, from their modules when first asked."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


__all__ = ["FakeOptions", "FakeResult", "make_fake", "write_truth"]

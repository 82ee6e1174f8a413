"""A faithful miniature of the registered ImageNet ILSVRC2012 download (``imnet-data fake OUT``).

Same archive names and byte formats as the real files (nested train tar, flat val tar, devkit with a real-layout
``meta.mat``, optional bbox archives and Kaggle layout), so validate, organize, shard and the loaders can be
tested and demonstrated without ImageNet; ``truth`` says what every file is.
"""
from imnet_data.fake.make import make_fake
from imnet_data.fake.options import FakeOptions, FakeResult
from imnet_data.fake.truth import write_truth

__all__ = ["FakeOptions", "FakeResult", "make_fake", "write_truth"]

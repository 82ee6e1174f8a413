"""imnet-data: validate, reorganize, shard, stage and load ImageNet.

From "we registered and downloaded ImageNet" to "our GPUs never wait for data".
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imnet-data")
except PackageNotFoundError:  # running from a checkout without an install
    __version__ = "0.0.0+local"

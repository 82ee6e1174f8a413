"""WebDataset shards of ImageNet: plan, write, index, manifest, verify, preview.

``shard(src, dest, ShardOptions(...))`` writes ``dest/<split>/<name>-<split>-%06d.tar`` with DALI index files,
``plan.json.gz`` and (last) ``manifest.json``; ``merge(dest)`` finishes a multi-node run.
"""
from imnet_data.shards.build import ShardReport, merge, shard
from imnet_data.shards.manifest import IncompleteError, read_manifest
from imnet_data.shards.options import ShardOptions
from imnet_data.shards.preview import preview
from imnet_data.shards.verify import VerifyReport, verify

__all__ = ["IncompleteError", "ShardOptions", "ShardReport", "VerifyReport", "merge", "preview", "read_manifest",
           "shard", "verify"]

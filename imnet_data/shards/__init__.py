"""WebDataset shards of ImageNet: plan, write, index, manifest, verify, preview.

``shard(src, dest, ShardOptions(...))`` writes ``dest/<split>/<name>-<split>-%06d.tar`` with DALI index files,
``plan.json.gz`` and (last) ``manifest.json``; ``merge(dest)`` finishes a multi-node run.
"""
from imnet_data.shards.build import ShardReport, merge, shard
from imnet_data.shards.manifest import IncompleteError, read_manifest
from imnet_data.shards.plan import ShardOptions

__all__ = ["IncompleteError", "ShardOptions", "ShardReport", "merge", "read_manifest", "shard"]

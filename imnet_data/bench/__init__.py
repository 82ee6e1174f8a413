"""Benchmark code: ``imnet-data bench DEST``, the loader against its ceiling and the usual alternatives.

``run.py`` (:func:`~imnet_data.bench.run.bench`, the command's rows and ratios), ``rows.py`` (a row, the report,
how a row is timed), ``peers.py`` (plain DALI as a user writes it, torchvision ImageFolder), ``ceilings.py``
(decode alone: DALI, PIL), ``end_to_end.py`` (a model's training steps fed by each loader), ``host.py`` (the host
path alone).
"""

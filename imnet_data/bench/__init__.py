"""Benchmark code: ``imnet-data bench DEST`` (the loader against its ceiling and the usual alternatives) and the
measuring helpers the scripts in ``tools/`` share.

``run.py`` (:func:`~imnet_data.bench.run.bench`, the command's rows and ratios), ``rows.py`` (a row, the report,
how a row is timed), ``peers.py`` (plain DALI as a user writes it, torchvision ImageFolder), ``ceilings.py``
(decode alone: DALI, PIL), ``end_to_end.py`` (a model's training steps fed by each loader), ``host.py`` (the host
path alone), ``measure.py`` (the ``tools/`` benchmarks' helpers: measured commands, timed runs with the final
sync, the fake download they share, their table). Nothing is imported here, so ``tools/`` reach ``measure.py``
without torch or DALI.
"""

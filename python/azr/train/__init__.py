"""Trainers: one TRR++ optimizer step over a batch of scored samples.

The loop talks only to :class:`Trainer`; ``torch`` (a plain optimizer, CPU or
one GPU) lives here and DeepSpeed slots in beside it.
"""

from azr.train.base import Sample, Trainer

__all__ = ["Sample", "Trainer"]

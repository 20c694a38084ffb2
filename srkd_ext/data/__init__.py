"""Data layer: read interaction logs, build chronological sequences, split, batch.

ds = load_dataset("ml-100k")                    # or a path; see load_dataset
split = leave_one_out_split(ds)
for batch in training_batches(split.train, max_len=50, batch_size=256, seed=0): ...
for batch in eval_batches(split.test, max_len=50, batch_size=256): ...
"""

from srkd_ext.data.batching import EvalBatch, TrainingBatch, eval_batches, training_batches
from srkd_ext.data.errors import DataError, DataFormatError, DatasetUnavailableError
from srkd_ext.data.loading import load_dataset
from srkd_ext.data.readers import FORMATS
from srkd_ext.data.registry import REGISTRY, cache_root, fetch_builtin
from srkd_ext.data.sequences import SequenceDataset
from srkd_ext.data.split import EvalSet, LeaveOneOutSplit, SequenceSet, leave_one_out_split

__all__ = [
    "load_dataset",
    "leave_one_out_split",
    "training_batches",
    "eval_batches",
    "SequenceDataset",
    "SequenceSet",
    "EvalSet",
    "LeaveOneOutSplit",
    "TrainingBatch",
    "EvalBatch",
    "DataError",
    "DataFormatError",
    "DatasetUnavailableError",
    "FORMATS",
    "REGISTRY",
    "cache_root",
    "fetch_builtin",
]

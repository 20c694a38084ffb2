"""Data layer: read interaction logs, build chronological sequences, split, batch.

    ds = load_dataset("ml-100k")                    # or a path; see load_dataset
    print(ds)                                       # users, items, interactions, sha256 ...
    split = leave_one_out_split(ds)
    for batch in training_batches(split.train, max_len=50, batch_size=256, seed=epoch): ...
    for batch in eval_batches(split.test, max_len=50, batch_size=256): ...

Choices made once for every format and model:
  * Formats: RecBole atomic, S3-Rec one-user-per-line, SASRec one-event-per-line, MovieLens
    u.data and ratings.dat, CSV/TSV with named columns (readers.py). Errors name file and line.
  * Order: by timestamp within a user, ties (and files without time) in file order.
  * Duplicate events (same user, item, time) are kept as separate events.
  * Ids: users 0..U-1 and items 1..I (0 = padding, not counted) in sorted order of the
    original ids; ``user_ids`` / ``item_ids`` map back.
  * Split: last item = test target, second-to-last = validation target, users with fewer
    than 3 events only train. The test history includes the validation item.
  * Training rows: the most recent max_len (input, next item) pairs, left-padded with 0.
  * An existing path always wins over a built-in dataset name.
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

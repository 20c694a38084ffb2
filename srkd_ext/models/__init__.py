"""Sequential recommenders: SASRec, GRU4Rec, Caser (teachers and baselines) and the SRCD student.

    build_model(arch, num_items, max_len, **hparams) -> SequentialRecommender
    save_model / load_model / export_model / load_exported / model_checksum
"""

from srkd_ext.models.base import PADDING_ID, SequentialRecommender
from srkd_ext.models.caser import Caser
from srkd_ext.models.export import export_model, load_exported
from srkd_ext.models.gru4rec import GRU4Rec
from srkd_ext.models.registry import ARCHITECTURES, build_model
from srkd_ext.models.sasrec import SASRec
from srkd_ext.models.serialization import load_model, model_checksum, save_model
from srkd_ext.models.srcd import SRCD

__all__ = [
    "ARCHITECTURES",
    "PADDING_ID",
    "SASRec",
    "GRU4Rec",
    "Caser",
    "SRCD",
    "SequentialRecommender",
    "build_model",
    "save_model",
    "load_model",
    "export_model",
    "load_exported",
    "model_checksum",
]

"""Architecture name -> model class, and `build_model`, the one way every caller constructs a model."""

from __future__ import annotations

import inspect

from srkd_ext.models.base import SequentialRecommender
from srkd_ext.models.caser import Caser
from srkd_ext.models.gru4rec import GRU4Rec
from srkd_ext.models.sasrec import SASRec
from srkd_ext.models.srcd import SRCD

ARCHITECTURES: dict[str, type[SequentialRecommender]] = {
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
    "caser": Caser,
    "srcd": SRCD,
}


def build_model(arch: str, num_items: int, max_len: int, **hparams) -> SequentialRecommender:
    """Builds `arch` ("sasrec" | "gru4rec" | "caser" | "srcd") for items 1..num_items and windows up
    to max_len; `hparams` are the class's keyword arguments (hidden_dim, num_layers, dropout, ...).

    `build_model(**model.config)` rebuilds an identical (untrained) model.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {arch!r}")
    cls = ARCHITECTURES[arch]
    options = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "num_items", "max_len")]
    unknown = sorted(set(hparams) - set(options))
    if unknown:  # say which model refused which names, and what it takes
        raise TypeError(f"build_model({arch!r}): unknown option(s) {', '.join(unknown)}; "
                        f"{arch} takes {', '.join(options)}")
    try:
        return cls(num_items=num_items, max_len=max_len, **hparams)
    except TypeError as exc:
        raise TypeError(f"build_model({arch!r}): {exc}") from exc

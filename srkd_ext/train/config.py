"""Training configuration: plain data, recorded in every checkpoint and log."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class TrainConfig:
    """How to train one model.

    epochs: maximum number of passes over the training sequences.
    patience: stop after this many epochs without a better validation `valid_metric`
        (None: never stop early).
    max_len: window length of the training batches (must not exceed the model's max_len).
    deterministic: torch.use_deterministic_algorithms for the run (slower on GPU; bitwise
        reproducible runs on one machine).
    log_path: JSON-lines log of every epoch (default: <out_dir>/train_log.jsonl).
    mask_seen: mask history items during validation (the result records it).
    windows: "all" trains every target of every sequence once per epoch (consecutive windows of
        max_len targets); "last" only each sequence's most recent max_len targets (original
        SASRec). See srkd_ext.train.windows.
    """

    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int | None = 10
    max_len: int = 50
    seed: int = 0
    deterministic: bool = False
    device: str = "cpu"
    log_path: str | None = None
    valid_metric: str = "NDCG@10"
    mask_seen: bool = False
    eval_chunk_users: int = 1024
    windows: str = "all"

    def __post_init__(self):
        for name in ("epochs", "batch_size", "max_len", "eval_chunk_users"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(f"TrainConfig.patience must be a positive integer or None, got {self.patience!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.windows not in ("last", "all"):
            raise ValueError(f"TrainConfig.windows must be 'last' or 'all', got {self.windows!r}")
        if self.log_path is not None:
            self.log_path = str(self.log_path)

    def to_dict(self) -> dict:
        return asdict(self)

    # Fields that change the result: a checkpoint written under other values is not resumed.
    RESULT_FIELDS = ("batch_size", "lr", "weight_decay", "max_len", "seed", "valid_metric", "mask_seen", "windows")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

"""The interface every sequential recommender in srkd_ext implements.

A model maps a left-padded item sequence to one hidden vector per position and scores hidden
vectors against its own item-embedding table (tied weights). Item ids are 1..num_items; id 0 is
padding and is never a valid prediction.
"""

from __future__ import annotations

import torch
from torch import nn

PADDING_ID = 0


class SequentialRecommender(nn.Module):
    """Base class: item table, scoring and next-item prediction shared by all architectures.

    Subclasses implement `forward(input_ids [B, L]) -> hidden [B, L, d]`, strictly causal: the
    hidden state at position t depends on the items at positions <= t only.

    `config` holds the architecture name and every constructor argument as plain JSON data, so
    `build_model(**config)` rebuilds the same model (used by save/load and checkpoints).
    """

    arch: str = ""

    def __init__(self, num_items: int, max_len: int, hidden_dim: int, config: dict):
        super().__init__()
        _check_positive_int("num_items", num_items)
        _check_positive_int("max_len", max_len)
        _check_positive_int("hidden_dim", hidden_dim)
        self.num_items = num_items
        self.max_len = max_len
        self.hidden_dim = hidden_dim
        self.config = {"arch": self.arch, "num_items": num_items, "max_len": max_len, **config}
        # Row 0 is the padding item: zero, and it receives no gradient from embedding lookups.
        self.item_embedding = nn.Embedding(num_items + 1, hidden_dim, padding_idx=PADDING_ID)

    def check_input(self, input_ids: torch.Tensor) -> None:
        """Raises a clear error for inputs the model cannot encode."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {tuple(input_ids.shape)}")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input_ids must be int64 item ids, got {input_ids.dtype}")
        if input_ids.size(1) > self.max_len:
            raise ValueError(
                f"input_ids has length {input_ids.size(1)} but the model was built with max_len={self.max_len}"
            )

    def score_items(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the real items only: hidden [M, d] -> [M, num_items], column j is item j + 1.

        Training and distillation use this form: the padding item is not a column at all, so it
        can never receive probability mass (targets are shifted by -1 to match).
        """
        return hidden @ self.item_embedding.weight[1:].t()

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits indexed by item id: hidden [M, d] -> [M, num_items + 1], column 0 is -inf."""
        logits = hidden @ self.item_embedding.weight.t()
        logits[..., PADDING_ID] = float("-inf")
        return logits

    def training_logits(self, input_ids: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits at the positions that have a next item, and those items' columns.

        input_ids, targets [B, L] (targets 0 at padding) -> logits [M, num_items] over items
        1..num_items and target columns [M] (item id - 1), M = number of non-padded targets. The
        hidden states are gathered before the item matmul, so padding is never scored.
        """
        valid = targets != PADDING_ID
        hidden = self.forward(input_ids)[valid]
        return self.score_items(hidden), targets[valid] - 1

    def predict(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-item logits after the last position: input_ids [B, L] -> [B, num_items + 1]."""
        return self.score(self.forward(input_ids)[:, -1])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def padding_mask(input_ids: torch.Tensor) -> torch.Tensor:
    """True where the input is padding: [B, L] bool."""
    return input_ids == PADDING_ID


def right_aligned_positions(length: int, max_len: int, device: torch.device) -> torch.Tensor:
    """Position ids for a left-padded window of `length`: the last column is always max_len - 1.

    Counting from the right keeps a model's position embeddings meaning "k steps before the most
    recent item" whatever window length it is fed (training windows, evaluation, teachers with a
    longer max_len than the student's batches).
    """
    return torch.arange(max_len - length, max_len, device=device)


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_probability(name: str, value) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")

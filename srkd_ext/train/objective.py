"""The plain training objective: next-item cross-entropy over the full catalogue.

An objective is any callable `(model, batch) -> scalar loss`; srkd_ext.distill provides the
distillation objectives with the same signature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from srkd_ext.models.base import SequentialRecommender


class NextItemCrossEntropy:
    """Mean CE over every non-padded position of the batch (batch.inputs, batch.targets [B, L])."""

    description = {"objective": "cross_entropy"}

    def __call__(self, model: SequentialRecommender, batch) -> torch.Tensor:
        logits, target_columns = model.training_logits(batch.inputs, batch.targets)
        return F.cross_entropy(logits, target_columns)

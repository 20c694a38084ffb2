"""Exporting a trained model for inference without srkd_ext's Python model classes.

`export_model` writes a `torch.export` program (.pt2) of `predict`: input_ids [B, max_len]
(int64, left-padded with 0; any batch size) -> logits [B, num_items + 1] (column 0 is -inf).
Load it with `load_exported(path)` or plainly `torch.export.load(path).module()`. A model that
uses srkd_ext's custom ops (SRCD) records them as `torch.ops.srkd_ext.*` calls when the compiled
kernels are present, so the loading process must `import srkd_ext` (or load its library) first.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from srkd_ext.models.base import SequentialRecommender


class NextItemScorer(nn.Module):
    """Wraps a model so that its exported entry point is `predict`."""

    def __init__(self, model: SequentialRecommender):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.predict(input_ids)


def export_model(model: SequentialRecommender, path: str | os.PathLike) -> Path:
    """Exports `model.predict` (eval mode, CPU) to `path` with a dynamic batch dimension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    device = next(model.parameters()).device
    scorer = NextItemScorer(model).eval().cpu()
    example = torch.zeros(2, model.max_len, dtype=torch.int64)
    example[:, -3:] = torch.arange(1, 4).clamp(max=model.num_items)
    try:
        with warnings.catch_warnings():
            # nn.GRU re-assigns its flat weight list while tracing; the export is still exact.
            warnings.filterwarnings("ignore", message=".*_flat_weights.*were assigned during export")
            program = torch.export.export(
                scorer, (example,), dynamic_shapes={"input_ids": {0: torch.export.Dim.DYNAMIC}}
            )
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # keeps the .pt2 suffix
        torch.export.save(program, tmp)
        os.replace(tmp, path)
    finally:
        model.to(device).train(was_training)
    return path


def load_exported(path: str | os.PathLike):
    """Loads an exported scorer: returns a callable input_ids [B, max_len] -> logits [B, num_items + 1]."""
    return torch.export.load(Path(path)).module()

"""Training checkpoints: the best model so far and the state needed to resume a run.

    <out_dir>/best.pt   a saved model (srkd_ext.models.load_model reads it) plus its epoch and
                        validation metrics
    <out_dir>/last.pt   model, optimizer, RNG states, epoch counter, history, early-stopping state

Both are written atomically (temporary file, then rename) and hold plain data and tensors only,
so torch.load(..., weights_only=True) reads them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from srkd_ext.models.serialization import atomic_torch_save, model_payload

STATE_FORMAT = "srkd_ext.train_state/1"
BEST_NAME = "best.pt"
LAST_NAME = "last.pt"


def save_best(model, out_dir: Path, epoch: int, valid: dict) -> Path:
    payload = model_payload(model)
    payload.update({"epoch": epoch, "valid": dict(valid)})
    return atomic_torch_save(payload, Path(out_dir) / BEST_NAME)


def save_state(state: dict, out_dir: Path) -> Path:
    return atomic_torch_save({"format": STATE_FORMAT, **state}, Path(out_dir) / LAST_NAME)


def load_state(out_dir: Path) -> dict | None:
    """The resume state in out_dir, or None when there is none."""
    path = Path(out_dir) / LAST_NAME
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a srkd_ext training state (format {state.get('format')!r})")
    return state

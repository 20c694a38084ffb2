"""Saving, loading, exporting and fingerprinting models.

A saved model is `{"format": ..., "config": model.config, "state_dict": ...}`: plain data and
tensors only, so `torch.load(path, weights_only=True)` reads it (no pickled classes, which
torch >= 2.6 refuses by default).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from srkd_ext.models.base import SequentialRecommender
from srkd_ext.models.registry import build_model

FORMAT = "srkd_ext.model/1"


def model_payload(model: SequentialRecommender) -> dict:
    """What save_model writes, for callers that embed a model in a larger checkpoint."""
    return {
        "format": FORMAT,
        "config": json.loads(json.dumps(model.config)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def model_from_payload(payload: dict, map_location="cpu") -> SequentialRecommender:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"not a saved srkd_ext model (expected format {FORMAT!r})")
    model = build_model(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.to(map_location)


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same directory, then rename over `path`.

    A crash mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_model(model: SequentialRecommender, path: str | os.PathLike) -> Path:
    """Writes the model's configuration and weights to `path` (atomically)."""
    return atomic_torch_save(model_payload(model), path)


def load_model(path: str | os.PathLike, map_location="cpu") -> SequentialRecommender:
    """Rebuilds a model written by save_model; the loaded model is in eval mode."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return model_from_payload(payload, map_location).eval()


def model_checksum(model: SequentialRecommender) -> str:
    """sha256 over the configuration and every weight, in state-dict order: identifies a teacher."""
    digest = hashlib.sha256(json.dumps(model.config, sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

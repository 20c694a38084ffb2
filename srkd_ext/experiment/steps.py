"""The steps every command is made of, each turning a user's mistake into a `UserError`:
check the device, load a dataset, build / load / train / evaluate / profile one model.

`srkd run` chains them for a whole experiment; `srkd train`, `distill`, `evaluate`, `export` and
`bench` use them one at a time, so all commands read and write the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from srkd_ext.experiment.errors import UserError
from srkd_ext.experiment.records import MAIN_METRIC


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else "no NVIDIA GPU is visible (torch.cuda.is_available() is False)")
        raise UserError(f"--device cuda: CUDA is not available ({why}); use --device cpu")
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device: expected cpu or cuda, got {device!r}")


def open_dataset(source: str, format: str | None = None, min_rating: float | None = None, k_core: int = 0):
    """load_dataset with its errors (missing file, bad format, unknown name, offline fetch) as
    one-line UserErrors."""
    from srkd_ext.data import FORMATS, load_dataset

    if format is not None and format not in FORMATS:
        raise UserError(f"--format: unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    try:
        return load_dataset(source, format, min_rating=min_rating, k_core=k_core or 0)
    except ValueError as exc:  # DataError, DataFormatError, DatasetUnavailableError are ValueErrors
        raise UserError(f"--dataset {source}: {_one_line(exc)}") from None
    except OSError as exc:
        raise UserError(f"--dataset {source}: cannot read it: {exc.strerror or exc}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def build(arch: str, num_items: int, max_len: int, hparams: dict, key: str, seed: int):
    """build_model with its initial weights drawn from `seed` (the trainer seeds only training, so
    without this a run's first model started from unseeded weights); an unknown or invalid
    hyperparameter is reported under `key`, the flag or config key the hparams came from."""
    from srkd_ext.models import build_model
    from srkd_ext.train import seed_everything

    seed_everything(seed)
    try:
        return build_model(arch, num_items, max_len, **hparams)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{key}: {_one_line(exc)}") from None


def load_checkpoint(path: str | Path, option: str = "--checkpoint"):
    """A model written by save_model or by the trainer (best.pt)."""
    from srkd_ext.models import load_model

    p = Path(path)
    if not p.exists():
        raise UserError(f"{option}: file not found: {p}")
    if p.is_dir():
        best = p / "best.pt"
        if not best.is_file():
            raise UserError(f"{option}: {p} is a folder without best.pt; pass the checkpoint file")
        p = best
    try:
        return load_model(p)
    except Exception as exc:  # noqa: BLE001 - torch.load of a foreign file can fail with any error
        msg = _one_line(exc)
        if len(msg) > 200:
            msg = msg[:200] + "..."
        raise UserError(f"{option}: {p} is not a srkd_ext model checkpoint ({msg})") from None


def check_model_fits(model, num_items: int, path: str | Path, option: str) -> None:
    if model.num_items != num_items:
        raise UserError(
            f"{option}: {path} was trained on a catalogue of {model.num_items:,} items, this dataset has "
            f"{num_items:,}; use the dataset (and filters) it was trained on"
        )


def train_config(options: dict, *, max_len: int, seed: int, device: str, mask_seen: bool):
    from srkd_ext.train import TrainConfig

    try:
        return TrainConfig(
            epochs=options["epochs"], batch_size=options["batch_size"], lr=float(options["lr"]),
            weight_decay=float(options.get("weight_decay", 0.0)), patience=options["patience"],
            max_len=max_len, seed=seed, device=device, mask_seen=mask_seen,
            **({"windows": options["windows"]} if "windows" in options else {}),
        )
    except ValueError as exc:
        raise UserError(f"training options: {_one_line(exc)}") from None


def kd_config(temperature: float, alpha: float, top_k: int | None, gate_rank: int | None, weights: Any,
              cache_dir: str | None = None):
    from srkd_ext.train import KDConfig

    try:
        return KDConfig(temperature=float(temperature), alpha=float(alpha), top_k=top_k, gate_rank=gate_rank,
                        teacher_weights=weights, cache_dir=cache_dir)
    except ValueError as exc:
        raise UserError(f"distillation options: {_one_line(exc)}") from None


def train_model(model, split, cfg, out_dir: Path, *, teachers=None, kd=None, label: str = ""):
    """Trains with a progress bar for the whole run; resumes from out_dir/last.pt when present.

    A checkpoint left by a run with other settings is a UserError (the folder belongs to another
    model), not a traceback."""
    from srkd_ext.experiment.progress import TrainingProgress
    from srkd_ext.train import train

    with TrainingProgress(label or model.arch, cfg.epochs, Path(out_dir) / "train_log.jsonl"):
        try:
            return train(model, split, cfg, out_dir, teachers=teachers, kd=kd, progress=False, resume=True)
        except ValueError as exc:
            if "cannot resume" in str(exc):
                raise UserError(f"--out: {_one_line(exc)}") from None
            raise


def evaluate_model(model, evalset, num_items: int, evaluation: dict, *, device: str, max_len: int,
                   seed: int = 0) -> dict:
    from srkd_ext.train import evaluate

    if evaluation["protocol"] == "sampled" and evaluation["num_negatives"] >= num_items:
        raise UserError(
            f"num_negatives: {evaluation['num_negatives']} sampled negatives need a catalogue of more items; "
            f"this dataset has {num_items:,} (use fewer negatives or --protocol full)"
        )
    return evaluate(
        model, evalset, num_items, ks=tuple(evaluation["ks"]), mask_seen=evaluation["mask_seen"],
        protocol=evaluation["protocol"], num_negatives=evaluation["num_negatives"], seed=seed,
        device=device, max_len=max_len,
    )


def profile(model, max_len: int, device: str = "cpu", repeats: int = 20, warmup: int = 3) -> dict:
    from srkd_ext.train import profile_model

    prof = profile_model(model, max_len, device=device, repeats=repeats, warmup=warmup)
    return {key: prof[key] for key in ("params", "size_mb", "latency_ms_batch1", "throughput_batch256", "device")
            if key in prof}


def history_rows(history: list[dict]) -> list[dict]:
    """The trainer's per-epoch records reduced to what the report plots and tabulates."""
    rows = []
    for h in history:
        valid = h.get("valid", {})
        rows.append({
            "epoch": h["epoch"], "loss": h.get("loss"), f"valid_{MAIN_METRIC}": valid.get(MAIN_METRIC),
            "valid_HR@10": valid.get("HR@10"), "seconds": h.get("seconds"),
        })
    return rows


def metrics_only(result: dict) -> dict:
    """Drop the bookkeeping keys (protocol, users, ...) from evaluate()'s dict: metric name -> value."""
    return {k: float(v) for k, v in result.items() if "@" in k or k == "loss"}

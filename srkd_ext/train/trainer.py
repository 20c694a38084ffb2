"""The training loop: Adam, early stopping on a validation metric, atomic checkpoints, resume.

One step: batch (srkd_ext.data.training_batches) -> objective(model, batch) (plain CE, or a
distillation objective from srkd_ext.distill) -> backward -> Adam. One epoch ends with a full
ranking evaluation on split.valid; the best model by `cfg.valid_metric` is written to
<out_dir>/best.pt and the resume state to <out_dir>/last.pt after every epoch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from tqdm.auto import tqdm

from srkd_ext.data import training_batches
from srkd_ext.distill import KDConfig, make_distillation_objective
from srkd_ext.models.base import SequentialRecommender
from srkd_ext.train.checkpoint import BEST_NAME, load_state, save_best, save_state
from srkd_ext.train.config import TrainConfig
from srkd_ext.train.evaluate import evaluate
from srkd_ext.train.objective import NextItemCrossEntropy
from srkd_ext.train.reproducibility import deterministic_algorithms, epoch_seed, rng_state, set_rng_state
from srkd_ext.train.windows import training_windows


@dataclass
class TrainResult:
    """best_epoch: epoch of the best validation metric (1-based); best_valid: its metrics;
    history: one dict per epoch (loss, valid metrics, seconds); checkpoint: the best model
    (load with srkd_ext.models.load_model); seconds: training + validation time of all epochs,
    including those of an interrupted run that was resumed."""

    best_epoch: int
    best_valid: dict
    history: list = field(default_factory=list)
    checkpoint: Path | None = None
    seconds: float = 0.0
    stopped_early: bool = False


def train(
    model: SequentialRecommender,
    split,
    cfg: TrainConfig,
    out_dir,
    *,
    teachers: list | None = None,
    kd: KDConfig | None = None,
    progress: bool = True,
    resume: bool = True,
) -> TrainResult:
    """Trains `model` on split.train, validating on split.valid after every epoch.

    teachers / kd: distill from frozen teachers (srkd_ext.distill); teachers without kd use
        KDConfig() defaults. Without both, the objective is next-item cross-entropy.
    resume: continue from <out_dir>/last.pt when present (same final result as an uninterrupted
        run with the same seed); False starts over and overwrites it.
    On return the model holds the best epoch's weights (also in TrainResult.checkpoint).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if cfg.max_len > model.max_len:
        raise ValueError(f"TrainConfig.max_len ({cfg.max_len}) exceeds the model's max_len ({model.max_len})")
    if split.num_items != model.num_items:
        raise ValueError(f"the split has {split.num_items} items but the model was built for {model.num_items}")
    if kd is not None and not teachers:
        raise ValueError("kd was given but no teachers: pass teachers=[...] to distill")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = Path(cfg.log_path) if cfg.log_path else out_dir / "train_log.jsonl"
    device = torch.device(cfg.device)
    model.to(device)
    train_set = training_windows(split.train, cfg.max_len, cfg.windows)

    if teachers:
        objective = make_distillation_objective(
            teachers, kd if kd is not None else KDConfig(), train=train_set, num_items=split.num_items,
            max_len=cfg.max_len, batch_size=cfg.batch_size, device=device, progress=progress,
        )
    else:
        objective = NextItemCrossEntropy()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    identity = {
        "model": model.config,
        "train": {name: getattr(cfg, name) for name in TrainConfig.RESULT_FIELDS},
        "objective": objective.description,
    }

    state = load_state(out_dir) if resume else None
    if state is not None:
        _check_same_run(state["identity"], identity, out_dir)
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
    else:
        torch.manual_seed(cfg.seed)
        if log_path.exists():
            log_path.unlink()
        state = {
            "identity": identity,
            "epoch": 0,
            "history": [],
            "best_epoch": 0,
            "best_score": float("-inf"),
            "best_valid": {},
            "epochs_without_improvement": 0,
            "stopped_early": False,
        }

    with deterministic_algorithms(cfg.deterministic):
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            if state["stopped_early"]:
                break
            record = _run_epoch(model, train_set, cfg, objective, optimizer, epoch, device, progress)
            start = time.perf_counter()
            valid = evaluate(
                model, split.valid, split.num_items, mask_seen=cfg.mask_seen,
                chunk_users=cfg.eval_chunk_users, device=device, max_len=cfg.max_len,
            )
            record["eval_seconds"] = time.perf_counter() - start
            record["seconds"] = record["train_seconds"] + record["eval_seconds"]
            record["valid"] = valid
            if cfg.valid_metric not in valid:
                raise ValueError(f"TrainConfig.valid_metric {cfg.valid_metric!r} is not one of {sorted(valid)}")
            score = valid[cfg.valid_metric]
            if score > state["best_score"]:
                state.update(best_epoch=epoch, best_score=score, best_valid=valid, epochs_without_improvement=0)
                save_best(model, out_dir, epoch, valid)
            else:
                state["epochs_without_improvement"] += 1
            if cfg.patience is not None and state["epochs_without_improvement"] >= cfg.patience:
                state["stopped_early"] = True
            record["best_epoch"] = state["best_epoch"]
            state["history"].append(record)
            state["epoch"] = epoch
            with open(log_path, "a") as log:
                log.write(json.dumps(record) + "\n")
            save_state(
                {
                    **state,
                    "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "rng": rng_state(),
                    "train_config": cfg.to_dict(),
                },
                out_dir,
            )
            if progress:
                tqdm.write(
                    f"epoch {epoch}: loss {record['loss']:.4f}  valid {cfg.valid_metric} {score:.4f}  "
                    f"({record['train_seconds']:.1f}s train, {record['eval_seconds']:.1f}s eval)"
                )

    best_path = out_dir / BEST_NAME
    if best_path.exists():
        best = torch.load(best_path, map_location="cpu", weights_only=True)
        model.load_state_dict(best["state_dict"])
    return TrainResult(
        best_epoch=state["best_epoch"],
        best_valid=state["best_valid"],
        history=state["history"],
        checkpoint=best_path if best_path.exists() else None,
        seconds=float(sum(r["seconds"] for r in state["history"])),
        stopped_early=state["stopped_early"],
    )


def _run_epoch(model, train_set, cfg, objective, optimizer, epoch, device, progress) -> dict:
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    batches = training_batches(
        train_set, cfg.max_len, cfg.batch_size, shuffle=True, seed=epoch_seed(cfg.seed, epoch)
    )
    total = len(batches) if hasattr(batches, "__len__") else None
    bar = tqdm(batches, total=total, desc=f"epoch {epoch}", unit="batch", disable=not progress, leave=False)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    steps = 0
    for batch in bar:
        batch = batch_to_device(batch, device)
        loss = objective(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
        steps += 1
        if progress and (steps % 10 == 0 or steps == total):
            bar.set_postfix(loss=f"{float(loss_sum) / steps:.4f}", refresh=False)
    bar.close()
    if steps == 0:
        raise ValueError("the training split produced no batches (no user has two or more items?)")
    mean_loss = float(loss_sum) / steps
    if not np.isfinite(mean_loss):
        raise FloatingPointError(f"training loss became {mean_loss} in epoch {epoch}; lower TrainConfig.lr")
    record = {
        "epoch": epoch,
        "loss": mean_loss,
        "steps": steps,
        "train_seconds": time.perf_counter() - start,
        # CPU time of this process: on a shared machine wall time mostly measures the neighbours.
        "train_cpu_seconds": time.process_time() - cpu_start,
    }
    if hasattr(objective, "epoch_summary"):  # distillation: the CE and KD parts of the loss
        record.update(objective.epoch_summary())
    return record


def batch_to_device(batch, device) -> SimpleNamespace:
    """A data-layer batch with every array field as a torch tensor on `device`."""
    items = (
        {f.name: getattr(batch, f.name) for f in fields(batch)} if is_dataclass(batch) else dict(vars(batch))
    )
    out = {}
    for name, value in items.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
        out[name] = value
    return SimpleNamespace(**out)


def _check_same_run(saved: dict, current: dict, out_dir: Path) -> None:
    for section in ("model", "train", "objective"):
        a, b = saved.get(section, {}), current.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                raise ValueError(
                    f"cannot resume from {out_dir / 'last.pt'}: {section} setting {key!r} was "
                    f"{a.get(key)!r} there and is {b.get(key)!r} now (pass resume=False to start over)"
                )

"""What each `srkd` subcommand does, given its parsed arguments (see srkd_ext/cli.py for the flags).

Every command returns its exit status; user mistakes are raised as UserError (one line, exit 2).
The files they exchange: `srkd train` / `distill` write <out>/best.pt (a save_model checkpoint),
last.pt (resume state), train_log.jsonl and metrics.json; `evaluate`, `export`, `bench` and
`distill --teacher` read best.pt (or its folder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from srkd_ext.experiment import steps
from srkd_ext.experiment.errors import UserError
from srkd_ext.experiment.report import write_atomic


def _dataset_args(args) -> tuple:
    return args.dataset, args.format, args.min_rating, args.k_core or 0


def _parse_hparams(items: list[str]) -> dict:
    hparams = {}
    for text in items:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--hparam: expected KEY=VALUE, got {text!r}")
        try:
            hparams[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"--hparam {key}: cannot read the value {raw!r}") from None
    return hparams


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _output_file(value, flag: str, example: str) -> Path | None:
    """The file an option names for writing, checked before any work: not a folder, in a folder
    that exists (write_atomic would otherwise fail with a traceback after the work is done)."""
    if value is None:
        return None
    out = Path(value)
    if out.is_dir():
        raise UserError(f"{flag}: {out} is a folder; give the file to write (e.g. {out / example})")
    if not out.parent.exists():
        raise UserError(f"{flag}: folder {out.parent} does not exist")
    return out


# --- srkd run ------------------------------------------------------------------------------------
def cmd_run(args) -> int:
    from srkd_ext.experiment.config import resolve_config
    from srkd_ext.experiment.pipeline import run_experiment

    if args.config is not None and not Path(args.config).exists():
        raise UserError(f"--config: file not found: {args.config}")
    flags = {
        "dataset.source": args.dataset, "dataset.format": args.format, "device": args.device,
        "seed": args.seed,
    }
    if args.dataset is not None and args.format is None:
        # A dataset named on the command line is read in its own format, not in one the config
        # file gave for another dataset.
        args.set_options = ["dataset.format=null", *args.set_options]
    cfg = resolve_config(args.preset, args.config, flags, args.set_options, epochs=args.epochs)
    out = args.out or cfg.get("out") or str(Path("runs") / f"{_dataset_stem(cfg['dataset']['source'])}-{cfg['preset']}")
    cfg["out"] = str(out)
    return run_experiment(cfg, Path(out), make_plots=not args.no_plots)


def _dataset_stem(source: str) -> str:
    name = Path(source).name
    return name.rsplit(".", 1)[0] if "." in name else name


# --- srkd data -----------------------------------------------------------------------------------
def cmd_data(args) -> int:
    ds = steps.open_dataset(args.dataset, args.format, args.min_rating, args.k_core or 0)
    from srkd_ext.data import leave_one_out_split

    split = leave_one_out_split(ds)
    summary = {**ds.summary(), "split": split.summary()}
    if args.json:
        _print_json(summary)
        return 0
    print(ds)
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        if key == "split":
            value = ", ".join(f"{k} {v:,}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        print(f"  {key.ljust(width)}  {value}")
    return 0


# --- srkd train / distill ------------------------------------------------------------------------
def _train_common(args, teachers=None, kd=None, kd_record=None) -> int:
    steps.check_device(args.device)
    ds = steps.open_dataset(*_dataset_args(args))
    from srkd_ext.data import leave_one_out_split

    split = leave_one_out_split(ds)
    for i, teacher in enumerate(teachers or []):
        steps.check_model_fits(teacher, split.num_items, args.teacher[i], "--teacher")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file, not a folder")
    seed = 0 if args.seed is None else args.seed
    model = steps.build(args.arch, split.num_items, args.max_len, _parse_hparams(args.hparam), "--hparam", seed)
    options = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "patience": args.patience,
               "windows": args.windows}
    tcfg = steps.train_config(options, max_len=args.max_len, seed=seed, device=args.device, mask_seen=False)
    print(ds, file=sys.stderr)
    if args.no_progress:
        from srkd_ext.train import train

        result = train(model, split, tcfg, out, teachers=teachers, kd=kd, progress=False, resume=True)
    else:
        result = steps.train_model(model, split, tcfg, out, teachers=teachers, kd=kd, label=args.arch)
    test = steps.evaluate_model(model, split.test, split.num_items,
                                {"ks": [5, 10, 20], "mask_seen": False, "protocol": "full", "num_negatives": 100},
                                device=args.device, max_len=args.max_len, seed=seed)
    metrics = {
        "checkpoint": str(out / "best.pt"), "dataset": ds.summary(), "arch": args.arch, "model": model.config,
        "kd": kd_record, "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        "train_seconds": result.seconds, "windows": args.windows, "valid": steps.metrics_only(result.best_valid),
        "test": steps.metrics_only(test), "protocol": {"ranking": "full", "mask_seen": False},
        "params": model.num_parameters(),
    }
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    t = metrics["test"]
    print(f"{args.arch}: test NDCG@10 {t['NDCG@10']:.4f}  HR@10 {t['HR@10']:.4f}  MRR@10 {t['MRR@10']:.4f}  "
          f"({metrics['params']:,} params, best epoch {result.best_epoch}/{len(result.history)}; full ranking, "
          f"seen items not masked)")
    print(f"checkpoint: {out / 'best.pt'}  metrics: {out / 'metrics.json'}")
    return 0


def cmd_train(args) -> int:
    return _train_common(args)


def _parse_weights(text: str, count: int):
    if text in ("uniform", "confidence"):
        return text
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise UserError(f"--weights: expected uniform, confidence or comma-separated numbers, got {text!r}") from None
    if len(weights) != count:
        raise UserError(f"--weights: {len(weights)} weights given for {count} teachers")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UserError(f"--weights: weights must be non-negative with a positive sum, got {text!r}")
    return weights


def cmd_distill(args) -> int:
    teachers = [steps.load_checkpoint(path, "--teacher") for path in args.teacher]
    weights = _parse_weights(args.weights, len(teachers))
    kd = steps.kd_config(args.temperature, args.alpha, args.top_k, args.gate_rank, weights)
    kd_record = {"teachers": list(args.teacher), "temperature": args.temperature, "alpha": args.alpha,
                 "top_k": args.top_k, "gate_rank": args.gate_rank, "weights": weights}
    return _train_common(args, teachers=teachers, kd=kd, kd_record=kd_record)


# --- srkd evaluate -------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    steps.check_device(args.device)
    json_out = _output_file(args.json, "--json", "eval.json")
    model = steps.load_checkpoint(args.checkpoint)
    ds = steps.open_dataset(*_dataset_args(args))
    from srkd_ext.data import leave_one_out_split

    split = leave_one_out_split(ds)
    steps.check_model_fits(model, split.num_items, args.checkpoint, "--checkpoint")
    evaluation = {"ks": [5, 10, 20], "mask_seen": args.mask_seen, "protocol": args.protocol,
                  "num_negatives": args.num_negatives}
    seed = 0 if args.seed is None else args.seed
    evalset = split.test if args.split == "test" else split.valid
    result = steps.evaluate_model(model, evalset, split.num_items, evaluation, device=args.device,
                                  max_len=model.max_len, seed=seed)
    metrics = steps.metrics_only(result)
    record = {
        "checkpoint": str(args.checkpoint), "dataset": ds.summary(), "split": args.split,
        "protocol": {"ranking": args.protocol, "mask_seen": args.mask_seen,
                     "num_negatives": args.num_negatives if args.protocol == "sampled" else None, "seed": seed},
        "users": result.get("users"), "metrics": metrics,
    }
    ranking = "full ranking" if args.protocol == "full" else f"{args.num_negatives} sampled negatives"
    seen = "seen items masked" if args.mask_seen else "seen items not masked"
    print(f"{args.checkpoint} on {ds.name} {args.split} ({result.get('users', '?'):,} users, {ranking}, {seen}):")
    for k in (5, 10, 20):
        print(f"  @{k:<3} HR {metrics[f'HR@{k}']:.4f}  NDCG {metrics[f'NDCG@{k}']:.4f}  MRR {metrics[f'MRR@{k}']:.4f}")
    if json_out:
        write_atomic(json_out, json.dumps(record, indent=2, default=str) + "\n")
        print(f"written: {args.json}")
    return 0


# --- srkd export ---------------------------------------------------------------------------------
def cmd_export(args) -> int:
    from srkd_ext.models import export_model

    out = _output_file(args.out, "--out", "model.pt2")
    model = steps.load_checkpoint(args.checkpoint)
    path = export_model(model, out)
    print(f"exported {model.config['arch']} ({model.num_parameters():,} params) to {path}: input_ids [B, "
          f"{model.max_len}] int64, left-padded with 0 -> logits [B, {model.num_items + 1}]; load with "
          "torch.export.load(path).module() after `import srkd_ext`")
    return 0


# --- srkd bench ----------------------------------------------------------------------------------
def cmd_bench(args) -> int:
    json_out = _output_file(args.json, "--json", "bench.json")
    rows = []
    for path in args.checkpoints:
        model = steps.load_checkpoint(path, "checkpoint")
        prof = steps.profile(model, model.max_len)
        rows.append({"checkpoint": str(path), "arch": model.config["arch"], **prof})
    header = f"{'checkpoint':<40} {'arch':<8} {'params':>10} {'size MB':>8} {'lat b=1 ms':>11} {'seq/s b=256':>12}"
    print(header)
    for r in rows:
        print(f"{r['checkpoint'][-40:]:<40} {r['arch']:<8} {r['params']:>10,} {r['size_mb']:>8.3f} "
              f"{r['latency_ms_batch1']:>11.2f} {r['throughput_batch256']:>12,.0f}")
    print("CPU, median of 20 calls on full-length random histories; scores over the whole catalogue.")
    if json_out:
        write_atomic(json_out, json.dumps(rows, indent=2) + "\n")
    return 0


# --- srkd compare --------------------------------------------------------------------------------
def cmd_compare(args) -> int:
    from srkd_ext.experiment.compare import comparison_table, load_runs

    markdown_out = _output_file(args.markdown, "--markdown", "compare.md")
    table = comparison_table(load_runs(args.runs))
    print(table)
    if markdown_out:
        write_atomic(markdown_out, table + "\n")
    return 0

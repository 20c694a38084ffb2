"""Several runs of one experiment (e.g. other seeds) side by side: mean and standard deviation
of every model's test metrics, and the individual values.

On small test sets one run cannot rank methods (ml-100k: 943 test users, NDCG@10 moves by about
0.005 from seed to seed); `srkd compare runs/a runs/b runs/c` gives the spread.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from srkd_ext.experiment.errors import UserError

METRICS = ("HR@10", "NDCG@10", "MRR@10")


def load_runs(run_dirs: list[str]) -> list[dict]:
    """results.json of each folder; all must be the same dataset, protocol and models."""
    runs = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "results.json"
        if not path.is_file():
            raise UserError(f"{run_dir}: no results.json (is it the --out folder of `srkd run`?)")
        try:
            runs.append(json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not a results file ({err})") from None
    for run_dir, run in zip(run_dirs, runs, strict=True):
        if not isinstance(run, dict) or not isinstance(run.get("models"), list) or not all(
            isinstance(run.get(key), dict) for key in ("protocol", "dataset")
        ):
            raise UserError(f"{Path(run_dir) / 'results.json'}: not a results file of `srkd run`")
    first = runs[0]
    for run_dir, run in zip(run_dirs[1:], runs[1:], strict=True):
        if run["dataset"].get("sha256") != first["dataset"].get("sha256"):
            raise UserError(f"{run_dir}: another dataset than {run_dirs[0]}; compare runs of one experiment")
        if run["protocol"] != first["protocol"]:
            raise UserError(f"{run_dir}: another evaluation protocol than {run_dirs[0]}; compare runs of one experiment")
    return runs


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def comparison_table(runs: list[dict]) -> str:
    """Markdown: one row per model (in the first run's order), mean ± sample standard deviation
    over the runs that finished it, then each run's NDCG@10 with its seed."""
    names = [m["name"] for m in runs[0]["models"]]
    for run in runs[1:]:
        names += [m["name"] for m in run["models"] if m["name"] not in names]
    seeds = ", ".join(str(run.get("seed")) for run in runs)
    header = ["model", "role", "runs"] + [f"{m} mean ± sd" for m in METRICS] + [f"NDCG@10 per run (seeds {seeds})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
    for name in names:
        per_run = [next((m for m in run["models"] if m["name"] == name and m.get("test")), None) for run in runs]
        done = [m for m in per_run if m is not None]
        if not done:
            continue
        cells = [name, done[0]["role"], str(len(done))]
        cells += [_mean_sd([m["test"][metric] for m in done]) for metric in METRICS]
        cells.append(" / ".join("-" if m is None else f"{m['test']['NDCG@10']:.4f}" for m in per_run))
        lines.append("| " + " | ".join(cells) + " |")
    p = runs[0]["protocol"]
    ranking = "full ranking over all items" if p["ranking"] == "full" else f"{p['num_negatives']} sampled negatives"
    masked = "seen items masked" if p.get("mask_seen") else "seen items not masked"
    footer = (f"\n{runs[0]['dataset']['name']} (sha256 {runs[0]['dataset']['sha256'][:12]}), test set, "
              f"{ranking}, {masked}; {len(runs)} runs.")
    return "\n".join(lines) + footer

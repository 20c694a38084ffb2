"""Writes an experiment's results: results.json (everything), report.md (the table a reader looks
at first, with the protocol stated) and the console table printed at the end of `srkd run`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from srkd_ext.experiment.records import MAIN_METRIC, ROLE_TEACHER, derive_comparisons

TABLE_COLUMNS = (
    "model", "role", "HR@10", "NDCG@10", "MRR@10", "params", "size MB", "latency b=1 (ms)",
    "throughput b=256 (seq/s)", "compression", "NDCG@10 kept",
)


def write_atomic(path: Path, text: str) -> None:
    """Write then rename, so an interrupted write never leaves a half file behind."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_results(meta: dict, records: list[dict], partial: bool, expected_models: list[str]) -> dict:
    """results.json's content. `meta` holds versions, dataset, protocol, seed, config, timings."""
    teacher = derive_comparisons(records)
    finished = {r["name"] for r in records}
    return {
        **meta,
        "partial": partial,
        "missing_models": [name for name in expected_models if name not in finished],
        "best_teacher": teacher["name"] if teacher else None,
        "models": records,
    }


def write_results_json(path: Path, results: dict) -> None:
    write_atomic(path, json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")


def _fmt_metric(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _fmt_int(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def _fmt_float(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table_rows(results: dict) -> list[list[str]]:
    rows = []
    for r in results["models"]:
        prof = r.get("profile", {})
        test = r.get("test", {})
        rows.append([
            r["name"], r["role"],
            _fmt_metric(test.get("HR@10")), _fmt_metric(test.get("NDCG@10")), _fmt_metric(test.get("MRR@10")),
            _fmt_int(prof.get("params")), _fmt_float(prof.get("size_mb"), 3),
            _fmt_float(prof.get("latency_ms_batch1"), 2), _fmt_int(_round(prof.get("throughput_batch256"))),
            "-" if r.get("compression_ratio") is None else f"{r['compression_ratio']:.1f}x",
            "-" if r.get("ndcg10_kept") is None else f"{100 * r['ndcg10_kept']:.1f}%",
        ])
    return rows


def _round(x: float | None) -> int | None:
    return None if x is None else int(round(x))


def protocol_sentence(results: dict) -> str:
    p = results["protocol"]
    ranking = ("full ranking over all items" if p["ranking"] == "full"
               else f"{p['num_negatives']} sampled negatives per user (seeded)")
    seen = "items already seen by the user are masked" if p["mask_seen"] else "seen items are not masked"
    return f"Test set, leave-one-out (last item = test, second to last = validation), {ranking}, {seen}."


def console_table(results: dict) -> str:
    """The final table of `srkd run`, aligned for a terminal."""
    rows = [list(TABLE_COLUMNS)] + table_rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    out = "\n".join(lines)
    if results.get("best_teacher"):
        out += f"\ncompression and NDCG@10 kept are relative to the best teacher, {results['best_teacher']}."
    out += "\n" + protocol_sentence(results)
    if results["partial"]:
        out += f"\nPARTIAL: not finished: {', '.join(results['missing_models'])} (rerun the same command to resume)."
    return out


def render_report_md(results: dict, with_plots: bool = True) -> str:
    """report.md; with_plots=False (`srkd run --no-plots`) leaves out the links to the PNGs."""
    ds = results["dataset"]
    lines = [f"# srkd experiment on {ds['name']}", ""]
    if results["partial"]:
        lines += [
            "> **Partial report**: the run was interrupted before these models finished: "
            f"{', '.join(results['missing_models'])}. Run the same command again to resume; finished "
            "models are not retrained.",
            "",
        ]
    lines += [
        protocol_sentence(results) + " Metrics are fractions (HR@10 = hit rate at 10).",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(TABLE_COLUMNS))) + "|",
    ]
    for row in table_rows(results):
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if results.get("best_teacher"):
        lines.append(
            f"Compression = parameters of the best teacher ({results['best_teacher']}, highest validation "
            "NDCG@10) / parameters of the model; NDCG@10 kept = model test NDCG@10 / that teacher's."
        )
    lines.append(
        "Latency: one sequence (batch 1) through the model and its scores over all items, CPU, median; "
        "throughput: sequences per second at batch 256."
    )
    lines += ["", "## What each student is", ""]
    for r in results["models"]:
        if r["role"] == ROLE_TEACHER:
            continue
        kd = r.get("kd")
        if kd is None:
            how = "trained on the data alone (cross-entropy)"
        else:
            sel = "all items" if kd.get("top_k") is None else f"top-{kd['top_k']} items of each teacher"
            gate = "" if kd.get("gate_rank") is None else f", teachers gated by rank of the true item <= {kd['gate_rank']}"
            how = (f"distilled from {', '.join(kd['teachers'])} ({sel}{gate}, weights {kd.get('weights', 'uniform')}, "
                   f"temperature {kd['temperature']}, alpha {kd['alpha']})")
        lines.append(f"- **{r['name']}** ({r['arch']}, {_hparams_text(r.get('hparams', {}))}): {how}.")
    lines.append("")
    if with_plots:
        lines += [
            "## Plots",
            "",
            "![accuracy against parameters](accuracy_vs_params.png)",
            "",
            "![validation NDCG@10 per epoch](validation_ndcg.png)",
            "",
        ]
    lines += [
        "## Setup",
        "",
        f"- dataset: `{ds['source']}` ({ds['users']:,} users, {ds['items']:,} items, "
        f"{ds['interactions']:,} interactions), sha256 `{ds['sha256']}`",
        f"- seed {results['seed']}, device {results['device']}, configuration fingerprint "
        f"`{results['config_fingerprint']}` (resolved configuration: `config.yaml`)",
        f"- srkd_ext {results['versions']['srkd_ext']}, torch {results['versions']['torch']}, "
        f"python {results['versions']['python']}; ops ran on "
        + ("the compiled kernels" if results["kernels"]["compiled"] else "the plain-PyTorch fallback (kernels not built)"),
        f"- wall time {results['seconds']:.0f} s ({results.get('cpu_seconds', float('nan')):.0f} CPU seconds) for "
        "this invocation (a resumed run counts only what it did)",
        "",
    ]
    return "\n".join(lines)


def _hparams_text(hparams: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in hparams.items()) or "defaults"


def write_report(out_dir: Path, results: dict, make_plots: bool = True) -> list[Path]:
    """Writes results.json, report.md and the plots into out_dir; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.json", out_dir / "report.md"]
    write_results_json(paths[0], results)
    with_plots = make_plots and bool(results["models"])
    write_atomic(paths[1], render_report_md(results, with_plots))
    if with_plots:
        from srkd_ext.experiment.plots import plot_accuracy_vs_params, plot_validation_curves

        paths.append(plot_accuracy_vs_params(results, out_dir / "accuracy_vs_params.png"))
        paths.append(plot_validation_curves(results, out_dir / "validation_ndcg.png"))
    return paths


__all__ = [
    "MAIN_METRIC", "build_results", "console_table", "render_report_md", "write_report", "write_atomic",
]

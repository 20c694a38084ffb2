"""The report's PNG plots (matplotlib, Agg backend: no display needed).

- accuracy_vs_params.png: test NDCG@10 against parameter count (log scale), one point per model,
  coloured by role and labelled with the model's name.
- validation_ndcg.png: validation NDCG@10 after each epoch, one line per trained model
  (teachers solid, students dashed), the best epoch marked.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from srkd_ext.experiment.records import MAIN_METRIC, ROLE_TEACHER, ROLES  # noqa: E402

_ROLE_STYLE = {  # colour, marker
    ROLES[0]: ("#1f77b4", "s"),
    ROLES[1]: ("#7f7f7f", "o"),
    ROLES[2]: ("#ff7f0e", "o"),
    ROLES[3]: ("#d62728", "*"),
    ROLES[4]: ("#2ca02c", "D"),
    ROLES[5]: ("#9467bd", "D"),
}


def _title_suffix(results: dict) -> str:
    p = results["protocol"]
    ranking = "full ranking" if p["ranking"] == "full" else f"{p['num_negatives']} sampled negatives"
    partial = " (PARTIAL)" if results.get("partial") else ""
    return f"{results['dataset']['name']}, {ranking}{partial}"


def plot_accuracy_vs_params(results: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    seen_roles = set()
    labels = []
    for r in results["models"]:
        params = r.get("profile", {}).get("params")
        ndcg = r.get("test", {}).get(MAIN_METRIC)
        if params is None or ndcg is None:
            continue
        colour, marker = _ROLE_STYLE.get(r["role"], ("black", "x"))
        label = r["role"] if r["role"] not in seen_roles else None
        seen_roles.add(r["role"])
        ax.scatter(params, ndcg, s=140 if marker == "*" else 70, c=colour, marker=marker, label=label,
                   edgecolors="black", linewidths=0.5, zorder=3)
        labels.append((ndcg, r["name"], params))
    # Highest first, so that a label pushed down by _separate_labels stays below its neighbours;
    # a thin leader line ties every moved name to its point.
    labels = [
        ax.annotate(name, (params, ndcg), textcoords="offset points", xytext=(9, 4), fontsize=8,
                    arrowprops={"arrowstyle": "-", "color": "0.45", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 4})
        for ndcg, name, params in sorted(labels, key=lambda label: -label[0])
    ]
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel(f"test {MAIN_METRIC}")
    ax.set_title(f"Accuracy against size: {_title_suffix(results)}")
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.15, y=0.12)
    # Outside the axes: inside, it can hide a model's point.
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, title="role", title_fontsize=8)
    fig.tight_layout()
    _separate_labels(fig, labels)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _separate_labels(fig, labels) -> None:
    """Moves point labels down until none overlaps an earlier one (models of equal size and
    similar accuracy would otherwise print their names on top of each other)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for label in labels:
        for _ in range(8):
            box = label.get_window_extent(renderer).expanded(1.0, 1.1)
            if not any(box.overlaps(other) for other in placed):
                break
            x, y = label.xyann
            label.xyann = (x, y - 10)
        placed.append(label.get_window_extent(renderer))


def plot_validation_curves(results: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    palette = plt.get_cmap("tab10" if len(results["models"]) <= 10 else "tab20")
    for n, r in enumerate(results["models"]):
        history = [h for h in r.get("history", []) if h.get(f"valid_{MAIN_METRIC}") is not None]
        if not history:
            continue
        epochs = [h["epoch"] for h in history]
        values = [h[f"valid_{MAIN_METRIC}"] for h in history]
        _, marker = _ROLE_STYLE.get(r["role"], ("black", "x"))
        style = "-" if r["role"] == ROLE_TEACHER else "--"
        (line,) = ax.plot(epochs, values, style, marker=marker, markersize=4, linewidth=1.4,
                          color=palette(n % palette.N), label=f"{r['name']} ({r['role']})")
        best = r.get("best_epoch")
        if best in epochs:
            ax.plot([best], [values[epochs.index(best)]], marker="o", markersize=8, markerfacecolor="none",
                    markeredgecolor=line.get_color(), linestyle="none")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {MAIN_METRIC}")
    ax.set_title(f"Validation {MAIN_METRIC} per epoch (circle: best epoch): {_title_suffix(results)}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path

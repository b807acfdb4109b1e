"""Static study plots (matplotlib/seaborn, headless)."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from dse.config import StudyConfig  # noqa: E402
from dse.results import pareto_mask  # noqa: E402

__all__ = ["LABELS", "plot_pareto"]

LABELS = {
    "accuracy": "accuracy (points)",
    "accuracy_drop": "accuracy drop (points)",
    "energy_uj": "energy per sentence (µJ)",
    "latency_ms": "mean latency per sentence (ms)",
    "p95_latency_ms": "p95 latency (ms)",
    "area_mm2": "area (mm²)",
    "memory_mb": "memory (MB)",
    "avg_exit_layer": "average exit layer",
}


def plot_pareto(trials: pd.DataFrame, config: StudyConfig, out: Path, *, hypervolume: float) -> Path:
    """Every complete trial (feasible / infeasible / Pareto) for each pair of objectives.

    The line in each panel is the 2-D non-dominated front of the feasible trials in that
    projection, drawn as a staircase in the objectives' directions.
    """
    names, directions = config.objective_names(), config.directions()
    done = trials[trials["state"] == "COMPLETE"].dropna(subset=names).copy()
    pairs = list(itertools.combinations(range(len(names)), 2)) or [(0, 0)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4.4), squeeze=False)
    front_all = np.zeros(len(done), dtype=bool)
    feas = done["feasible"].to_numpy(dtype=bool) if len(done) else np.zeros(0, dtype=bool)
    if feas.any():
        front_all[np.flatnonzero(feas)] = pareto_mask(done[names].to_numpy()[feas], directions)
    done["design"] = np.where(front_all, "Pareto", np.where(feas, "feasible", "infeasible"))
    palette = {"Pareto": "#d62728", "feasible": "#1f77b4", "infeasible": "#bbbbbb"}
    for ax, (i, j) in zip(axes[0], pairs):
        x, y = names[j], names[i]
        sns.scatterplot(data=done, x=x, y=y, hue="design", palette=palette, ax=ax, s=36,
                        hue_order=[h for h in palette if h in set(done["design"])])
        sub = done[feas][[x, y]].to_numpy()
        if len(sub) and i != j:
            front = sub[pareto_mask(sub, [directions[j], directions[i]])]
            front = front[np.argsort(front[:, 0])]
            ax.step(front[:, 0], front[:, 1], where="post", color="#d62728", lw=1.2)
        ax.set_xlabel(LABELS.get(x, x))
        ax.set_ylabel(LABELS.get(y, y))
        ax.grid(alpha=0.3)
    fig.suptitle(f"{config.name}: {len(done)} trials, {int(front_all.sum())} Pareto designs, "
                 f"hypervolume {hypervolume:.4g}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

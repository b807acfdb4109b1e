"""Static study plots (matplotlib/seaborn, headless); every figure is written as .png and .svg."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dse.analysis.results import StudyAnalysis  # noqa: E402
from dse.config import CategoricalParam, StudyConfig, knob_of  # noqa: E402
from dse.io import atomic_write  # noqa: E402
from dse.study.pareto import pareto_mask  # noqa: E402

__all__ = [
    "ENERGY_LABELS",
    "KNOB_LABELS",
    "LABELS",
    "plot_design_sentences",
    "plot_energy_breakdown",
    "plot_hypervolume_history",
    "plot_knobs_parallel",
    "plot_pareto",
    "save_figure",
    "write_study_plots",
]

LABELS = {
    "accuracy": "accuracy (points)",
    "accuracy_drop": "accuracy drop (points)",
    "energy_uj": "energy per sentence (µJ)",
    "latency_ms": "mean latency per sentence (ms)",
    "p95_latency_ms": "p95 latency (ms)",
    "area_mm2": "area (mm²)",
    "memory_mb": "memory (MB)",
    "avg_exit_layer": "average exit layer",
    "target_met_fraction": "sentences meeting the latency target (fraction)",
}
# hwmodels' energy components (ENERGY_KEYS), in the order they are stacked
ENERGY_LABELS = {
    "mac": "MAC (compute)",
    "sram": "SRAM",
    "envm": "eNVM (embeddings)",
    "dram": "DRAM",
    "leakage": "leakage",
    "sfu": "special functions",
    "overhead": "clock/control overhead",
}
KNOB_LABELS = {
    "encoder_pruning": "encoder pruning",
    "embedding_pruning": "embedding pruning",
    "weight_bits": "weight bits",
    "weight_exp_bits": "exponent bits",
    "attention_span": "attention span (tokens)",
    "exit_threshold": "exit threshold (nats)",
    "vmac_lanes": "VMAC lanes",
    "vector_size": "MACs per lane",
    "sram_kb": "SRAM (KiB)",
    "envm_cell": "eNVM cell",
    "voltage_v": "voltage (V)",
    "dvfs": "DVFS",
    "latency_target_ms": "DVFS target (ms)",
    "dvfs_layer1": "DVFS layer-1 voltage",
    "sparse_format": "sparse format",
    "weight_store": "weight store",
}
PALETTE = {"Pareto": "#d62728", "feasible": "#1f77b4", "infeasible": "#bbbbbb"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def save_figure(fig: Figure, out: Path) -> list[Path]:
    """Write ``out`` as .png and .svg (each atomically) and close the figure."""
    paths = []
    for fmt in ("png", "svg"):
        path = out.with_suffix(f".{fmt}")
        with atomic_write(path, "wb") as fh:
            # svg: keep text as text (smaller, selectable); the fonts are common sans-serifs
            with plt.rc_context({"svg.fonttype": "none"}):
                fig.savefig(fh, format=fmt, dpi=110, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _design_kind(done: pd.DataFrame, names: list[str], directions: list[str]) -> np.ndarray:
    """'Pareto' / 'feasible' / 'infeasible' for every complete trial."""
    feas = done["feasible"].to_numpy(dtype=bool)
    front = np.zeros(len(done), dtype=bool)
    if feas.any():
        front[np.flatnonzero(feas)] = pareto_mask(done[names].to_numpy(dtype=float)[feas], directions)
    return np.where(front, "Pareto", np.where(feas, "feasible", "infeasible"))


def _front_line(ax, done: pd.DataFrame, x: str, y: str, dx: str, dy: str) -> None:  # noqa: ANN001
    """The 2-D non-dominated front of the feasible trials, drawn as the attainment staircase."""
    sub = done[done["feasible"].astype(bool)][[x, y]].to_numpy(dtype=float)
    if len(sub) == 0:
        return
    front = sub[pareto_mask(sub, [dx, dy])]
    front = front[np.argsort(front[:, 0])]
    # the best y available at an x comes from the point on its better side in x
    ax.step(front[:, 0], front[:, 1], where="post" if dx == "minimize" else "pre",
            color=PALETTE["Pareto"], lw=1.2, label="2-D front")


def _scatter(ax, done: pd.DataFrame, x: str, y: str, *, legend: bool) -> None:  # noqa: ANN001
    order = [h for h in PALETTE if h in set(done["design"])]
    sns.scatterplot(data=done, x=x, y=y, hue="design", hue_order=order, palette=PALETTE, ax=ax,
                    s=36, legend=legend)
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    ax.grid(alpha=0.3)


def plot_pareto(trials: pd.DataFrame, config: StudyConfig, out: Path, *, hypervolume: float,
                reference_source: str = "") -> list[Path]:
    """Every complete trial (feasible / infeasible / Pareto) and the feasible front.

    Two objectives: one scatter with the front. Three or more: a pair grid (lower triangle:
    each pair with its 2-D front; diagonal: each objective's distribution).
    """
    names, directions = config.objective_names(), config.directions()
    done = trials[trials["state"] == "COMPLETE"].dropna(subset=names).copy()
    done["design"] = _design_kind(done, names, directions)
    n_front = int((done["design"] == "Pareto").sum())
    n = len(names)
    if n == 1:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        _scatter(ax, done, "trial", names[0], legend=True)
        ax.set_xlabel("trial")
    elif n == 2:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        _scatter(ax, done, names[1], names[0], legend=True)
        _front_line(ax, done, names[1], names[0], directions[1], directions[0])
    else:
        fig, axes = plt.subplots(n, n, figsize=(3.3 * n, 3.0 * n), squeeze=False)
        for i in range(n):
            for j in range(n):
                ax = axes[i, j]
                if j > i:
                    ax.axis("off")
                elif i == j:
                    order = [h for h in PALETTE if h in set(done["design"])]
                    sns.histplot(data=done, x=names[i], hue="design", hue_order=order, palette=PALETTE,
                                 multiple="stack", ax=ax, legend=False, bins=12)
                    ax.set_xlabel(_label(names[i]))
                    ax.set_ylabel("trials")
                else:
                    _scatter(ax, done, names[j], names[i], legend=False)
                    _front_line(ax, done, names[j], names[i], directions[j], directions[i])
        handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in PALETTE.items()]
        handles.append(plt.Line2D([], [], color=PALETTE["Pareto"], label="2-D front of the feasible trials"))
        axes[0, n - 1].legend(handles=handles, loc="upper right", frameon=False)
    where = f" ({reference_source})" if reference_source else ""
    fig.suptitle(f"{config.name}: {len(done)} trials, {n_front} Pareto designs, "
                 f"hypervolume {hypervolume:.4g}{where}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_hypervolume_history(history: pd.DataFrame, config: StudyConfig, out: Path, *,
                             reference: np.ndarray | None, reference_source: str) -> list[Path]:
    """Hypervolume of the feasible front after each completed trial."""
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    if len(history):
        ax.step(history["trial"], history["hypervolume"], where="post", color="#1f77b4")
        feas = history["feasible"].astype(bool)
        ax.scatter(history["trial"][feas], history["hypervolume"][feas], s=14, color="#1f77b4",
                   label="feasible trial")
        ax.scatter(history["trial"][~feas], history["hypervolume"][~feas], s=14, color="#bbbbbb",
                   label="infeasible trial")
        ax.legend(frameon=False)
    ax.set_xlabel("trial number")
    units = " × ".join(_label(n).split("(")[-1].rstrip(")") if "(" in _label(n) else n
                       for n in config.objective_names())
    ax.set_ylabel(f"hypervolume ({units})")
    ax.grid(alpha=0.3)
    ref = ""
    if reference is not None:
        ref = ", ".join(f"{n} {v:.4g}" for n, v in zip(config.objective_names(), reference))
    ax.set_title(f"{config.name}: hypervolume of the feasible front\nreference {ref} "
                 f"({reference_source})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_energy_breakdown(front: pd.DataFrame, config: StudyConfig, out: Path) -> list[Path]:
    """Stacked per-sentence energy by component for every Pareto design; [] when not recorded."""
    columns = [c for c in front.columns if c.startswith("energy.") and c.endswith("_uj")]
    if front.empty or not columns:
        return []
    keys = [c.removeprefix("energy.").removesuffix("_uj") for c in columns]
    keys = sorted(keys, key=lambda k: list(ENERGY_LABELS).index(k) if k in ENERGY_LABELS else len(ENERGY_LABELS))
    data = front[[f"energy.{k}_uj" for k in keys]].fillna(0.0).to_numpy(dtype=float)
    first = config.objective_names()[0]
    labels = [f"trial {int(t)}\n{_label(first).split(' (')[0]} {v:.4g}"
              for t, v in zip(front["trial"], front[first])]
    fig, ax = plt.subplots(figsize=(7.5, 1.0 + 0.55 * len(front)))
    colors = sns.color_palette("tab10", len(keys))
    left = np.zeros(len(front))
    y = np.arange(len(front))
    for k, key in enumerate(keys):
        ax.barh(y, data[:, k], left=left, color=colors[k], label=ENERGY_LABELS.get(key, key))
        left += data[:, k]
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("energy per sentence (µJ)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    ax.set_title(f"{config.name}: energy breakdown of the Pareto designs", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


def _knob_axis(config: StudyConfig, name: str, values: pd.Series) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Values scaled to [0, 1] over the knob's searched range, and the tick labels of that axis."""
    param = config.search_space.get(name)
    if isinstance(param, CategoricalParam) or knob_of(name).kind == "categorical":
        choices = list(param.choices) if isinstance(param, CategoricalParam) else list(knob_of(name).choices)
        numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)
        span = max(len(choices) - 1, 1)
        if numeric:  # match by value: a trial may hold 64.0 for the choice 64
            choices = sorted(choices)
            positions = [next((i for i, c in enumerate(choices) if np.isclose(float(v), c)), np.nan)
                         for v in values]
        else:
            index = {str(c): i for i, c in enumerate(choices)}
            positions = [index.get(str(v), np.nan) for v in values]
        scaled = np.array(positions, dtype=float) / span
        return scaled, [(i / span, str(c)) for i, c in enumerate(choices)]
    low = float(param.low) if param is not None else float(values.min())
    high = float(param.high) if param is not None else float(values.max())
    span = high - low if high > low else 1.0
    return (values.to_numpy(dtype=float) - low) / span, [(0.0, f"{low:g}"), (1.0, f"{high:g}")]


def plot_knobs_parallel(front: pd.DataFrame, config: StudyConfig, out: Path) -> list[Path]:
    """Parallel coordinates of the searched knobs of the Pareto designs, coloured by objective 1."""
    knobs = [k for k in config.search_space if f"knob.{k}" in front.columns]
    if front.empty or not knobs:
        return []
    first = config.objective_names()[0]
    scaled = np.column_stack([_knob_axis(config, k, front[f"knob.{k}"])[0] for k in knobs])
    fig, ax = plt.subplots(figsize=(1.45 * len(knobs) + 2.0, 4.6))
    color_values = front[first].to_numpy(dtype=float)
    norm = matplotlib.colors.Normalize(np.nanmin(color_values), np.nanmax(color_values) + 1e-12)
    cmap = plt.get_cmap("viridis")
    x = np.arange(len(knobs))
    for row, value in zip(scaled, color_values):
        ax.plot(x, row, color=cmap(norm(value)), lw=1.6, alpha=0.85, marker="o", ms=3)
    for i, k in enumerate(knobs):
        ax.axvline(i, color="#444444", lw=0.8)
        for pos, text in _knob_axis(config, k, front[f"knob.{k}"])[1]:
            ax.text(i + 0.04, pos, text, fontsize=7, va="center", ha="left", color="#333333")
    ax.set_xticks(x, [KNOB_LABELS.get(k, k) for k in knobs], rotation=25, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(knobs) - 0.6)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
    bar.set_label(_label(first))
    ax.set_title(f"{config.name}: knobs of the {len(front)} Pareto designs "
                 "(each axis spans the searched range)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_design_sentences(exit_layers: np.ndarray, latency_ms: np.ndarray, out: Path, *, num_layers: int,
                          title: str, sentence_target_ms: float | None = None,
                          mean_bound_ms: float | None = None) -> list[Path]:
    """One design: histogram of exit layers and distribution of per-sentence latency.

    ``sentence_target_ms``: the per-sentence (DVFS) latency target; ``mean_bound_ms``: the study's
    constraint on the mean latency. Both are drawn when given.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    counts = np.bincount(np.asarray(exit_layers, dtype=int), minlength=num_layers + 1)[1:num_layers + 1]
    ax1.bar(np.arange(1, num_layers + 1), counts, color="#1f77b4")
    ax1.set_xticks(np.arange(1, num_layers + 1))
    ax1.set_xlabel("exit layer")
    ax1.set_ylabel("sentences")
    ax1.set_title(f"exit layers (mean {np.mean(exit_layers):.2f} of {num_layers})", fontsize=10)
    ax1.grid(axis="y", alpha=0.3)
    latency = np.asarray(latency_ms, dtype=float)
    sns.histplot(latency, bins=30, ax=ax2, color="#7f7f7f")
    ax2.axvline(float(latency.mean()), color="#1f77b4", lw=1.5, label=f"mean {latency.mean():.3g} ms")
    if sentence_target_ms is not None:
        met = float(np.mean(latency <= sentence_target_ms))
        ax2.axvline(sentence_target_ms, color="#d62728", ls="--", lw=1.5,
                    label=f"per-sentence target {sentence_target_ms:.3g} ms ({100 * met:.0f}% meet it)")
    if mean_bound_ms is not None:
        ax2.axvline(mean_bound_ms, color="#ff7f0e", ls=":", lw=1.8,
                    label=f"mean-latency constraint {mean_bound_ms:.3g} ms")
    ax2.set_xlabel("latency per sentence (ms)")
    ax2.set_ylabel("sentences")
    ax2.set_title("per-sentence latency", fontsize=10)
    ax2.legend(frameon=False, fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


def write_study_plots(analysis: StudyAnalysis, plots_dir: Path) -> dict[str, list[Path]]:
    """Every study-level plot into ``plots_dir``: name -> [png, svg] (absent when not drawable)."""
    config = analysis.config
    trials = analysis.trials
    if trials.empty or not (trials["state"] == "COMPLETE").any():
        return {}
    out = {"pareto": plot_pareto(trials, config, plots_dir / "pareto.png", hypervolume=analysis.hypervolume,
                                 reference_source=_short_source(analysis.reference_source))}
    if analysis.reference is not None and len(analysis.history):
        out["hypervolume"] = plot_hypervolume_history(
            analysis.history, config, plots_dir / "hypervolume.png", reference=analysis.reference,
            reference_source=analysis.reference_source)
    for name, plot in (("energy_breakdown", plot_energy_breakdown), ("knobs", plot_knobs_parallel)):
        paths = plot(analysis.front, config, plots_dir / f"{name}.png")
        if paths:
            out[name] = paths
    return out


def _short_source(source: str) -> str:
    return "reference from the study definition" if "study definition" in source else "data-derived reference"

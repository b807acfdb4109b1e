"""Turn a study's trials into tables: all trials, the feasible Pareto front, hypervolume, picks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd

from dse.config import METRICS, StudyConfig
from dse.errors import DSEError
from dse.study.pareto import FrontTracker, feasible, pareto_mask, to_minimize

__all__ = [
    "DATA_REFERENCE",
    "PICKS",
    "StudyAnalysis",
    "analyse_study",
    "check_pick",
    "hypervolume",
    "hypervolume_contributions",
    "hypervolume_history",
    "pareto_table",
    "pick_label",
    "pick_trial",
    "reference_point",
    "study_reference",
    "trials_table",
]

# Named picks; ``best:<metric>`` picks the best Pareto design for any one metric.
PICKS = ("knee", "max-accuracy", "min-energy", "max-hv-contribution", "best:<metric>")
_ALIASES = {"max-accuracy": "best:accuracy", "min-energy": "best:energy_uj"}
DATA_REFERENCE = "derived from the data (10% of the range beyond the nadir of the completed trials)"
STUDY_REFERENCE = "fixed in the study definition"


def hypervolume(values: np.ndarray, directions: list[str], reference: np.ndarray) -> float:
    """Exact hypervolume dominated by ``values`` up to ``reference`` (both in objective units).

    Points that are not strictly better than the reference in every objective add nothing.
    """
    import moocore

    loss, ref, inside = _as_loss(values, directions, reference)
    if not inside.any():
        return 0.0
    return float(moocore.hypervolume(loss[inside], ref=ref))


def _as_loss(values: np.ndarray, directions: list[str],
             reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points and reference as losses (all minimized), and which points are strictly better than
    the reference in every objective (the others dominate no volume)."""
    loss = to_minimize(np.asarray(values, dtype=float).reshape(-1, len(directions)), directions)
    ref = to_minimize(np.asarray(reference, dtype=float)[None], directions)[0]
    return loss, ref, np.all(loss < ref, axis=1)


def reference_point(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Nadir of the given values pushed 10% of the range outwards (a data-derived reference)."""
    loss = to_minimize(np.asarray(values, dtype=float), directions)
    lo, hi = loss.min(axis=0), loss.max(axis=0)
    ref = hi + 0.1 * np.maximum(hi - lo, np.abs(hi) * 1e-3 + 1e-12)
    return to_minimize(ref[None], directions)[0]


def study_reference(trials: pd.DataFrame, config: StudyConfig) -> tuple[np.ndarray | None, str]:
    """The hypervolume reference point and where it comes from.

    The study definition's ``hypervolume_reference`` when set; else derived from the completed
    trials (so it moves as the study grows, which the returned description says). ``None`` when
    neither exists (no completed trial yet).
    """
    names = config.objective_names()
    if config.hypervolume_reference is not None:
        return np.array([config.hypervolume_reference[n] for n in names], dtype=float), STUDY_REFERENCE
    done = _complete(trials, names)
    if done.empty:
        return None, DATA_REFERENCE
    return reference_point(done[names].to_numpy(dtype=float), config.directions()), DATA_REFERENCE


def _complete(trials: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    if trials.empty:
        return trials
    return trials[trials["state"] == "COMPLETE"].dropna(subset=names)


def hypervolume_history(trials: pd.DataFrame, config: StudyConfig, reference: np.ndarray) -> pd.DataFrame:
    """Hypervolume of the feasible front after each completed trial, in trial-number order.

    Columns: ``trial``, ``feasible``, ``hypervolume`` (objective units multiplied together).
    """
    names, directions = config.objective_names(), config.directions()
    done = _complete(trials, names)
    if done.empty:
        return pd.DataFrame({"trial": [], "feasible": [], "hypervolume": []})
    done = done.sort_values("trial")
    # incremental, and copies of a front point (re-sampled designs) are not added again: the
    # front stays as small as it is, where re-checking all of it per trial grew as n^3
    front = FrontTracker(directions)
    hv, rows = 0.0, []
    values = done[names].to_numpy(dtype=float)
    for point, trial, ok in zip(values, done["trial"].astype(int), done["feasible"].astype(bool)):
        if ok and front.add(point, int(trial)):  # only a new non-dominated point changes the hypervolume
            hv = hypervolume(front.values, directions, reference)
        rows.append({"trial": int(trial), "feasible": bool(ok), "hypervolume": hv})
    return pd.DataFrame(rows)


def hypervolume_contributions(front: pd.DataFrame, config: StudyConfig, reference: np.ndarray) -> np.ndarray:
    """Hypervolume each design alone adds to the front (total minus the total without it)."""
    import moocore

    names, directions = config.objective_names(), config.directions()
    loss, ref, inside = _as_loss(front[names].to_numpy(dtype=float), directions, reference)
    out = np.zeros(len(loss))
    if inside.any():
        # ignore_dominated=False: exactly "total minus total without it", dominated points included
        out[inside] = moocore.hv_contributions(loss[inside], ref=ref, ignore_dominated=False)
    return out


def trials_table(study: optuna.Study, config: StudyConfig) -> pd.DataFrame:
    """One row per finished or failed trial: number, state, objectives, metrics, knobs.

    Also ``energy.<component>_uj``: the per-sentence energy breakdown the trial recorded
    (absent for trials that recorded none).
    """
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:
            continue
        row: dict = {"trial": t.number, "state": t.state.name, "feasible": feasible(t)}
        metrics = t.user_attrs.get("metrics", {})
        for name in config.objective_names():
            row[name] = metrics.get(name, np.nan)
        for name, value in metrics.items():
            row.setdefault(name, value)
        row["derived"] = bool(t.user_attrs.get("derived", False))
        row["derived_from"] = t.user_attrs.get("derived_from")
        row["cache_hit"] = t.user_attrs.get("cache_hit")
        row["seconds"] = t.user_attrs.get("seconds")
        row["fail_reason"] = t.user_attrs.get("fail_reason")
        row["screened"] = t.user_attrs.get("screened")  # PRUNED by the hardware model: why
        row["early_stopped"] = t.user_attrs.get("early_stopped")  # PRUNED after part of its dev pass: why
        for name, value in t.user_attrs.get("knobs", t.params).items():
            row[f"knob.{name}"] = value
        breakdown = (t.user_attrs.get("details") or {}).get("energy_breakdown_uj") or {}
        for name, value in breakdown.items():
            row[f"energy.{name}_uj"] = value
        faults = (t.user_attrs.get("details") or {}).get("faults")
        if faults:  # eNVM fault injection on: spread over the repeats and cells hit
            row["faults.accuracy_std"] = faults["accuracy_std"]
            row["faults.faulty_cells_mean"] = faults["faulty_cells_mean"]
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_table(trials: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Feasible, complete trials on the Pareto front, sorted by the first objective."""
    names = config.objective_names()
    if trials.empty:
        return trials
    done = trials[(trials["state"] == "COMPLETE") & trials["feasible"].astype(bool)].dropna(subset=names)
    if done.empty:
        return done
    front = done[pareto_mask(done[names].to_numpy(), config.directions())]
    # one row per design: TPE re-samples and sweeps re-derive identical knob settings
    knobs = [c for c in front.columns if c.startswith("knob.")]
    if knobs:
        front = front.sort_values("trial").drop_duplicates(subset=knobs, keep="first")
    ascending = config.directions()[0] == "minimize"
    return front.sort_values(names[0], ascending=ascending).reset_index(drop=True)


def check_pick(pick: str) -> str:
    """The canonical form of a pick (aliases resolved); a ``DSEError`` for an unknown one."""
    canonical = _ALIASES.get(pick, pick)
    if canonical in ("knee", "max-hv-contribution"):
        return canonical
    if canonical.startswith("best:"):
        metric = canonical.removeprefix("best:")
        if metric in METRICS:
            return canonical
        raise DSEError(f"unknown metric {metric!r} in pick {pick!r}; known: {', '.join(METRICS)}")
    raise DSEError(f"unknown pick {pick!r} ({', '.join(PICKS)})")


def pick_label(pick: str) -> str:
    """A file-name friendly form of a pick (``best:latency_ms`` -> ``best-latency_ms``)."""
    return pick.replace(":", "-")


def pick_trial(front: pd.DataFrame, config: StudyConfig, pick: str, *,
               reference: np.ndarray | None = None) -> int:
    """Trial number chosen from the (feasible) Pareto front.

    ``knee``: closest to the ideal point with every objective scaled to the front's range;
    ``best:<metric>`` (``max-accuracy`` = ``best:accuracy``, ``min-energy`` = ``best:energy_uj``):
    best value of one metric in its direction; ``max-hv-contribution``: largest hypervolume
    contribution against ``reference`` (default: the study definition's, else derived from
    the front itself).
    """
    canonical = check_pick(pick)
    if front.empty:
        raise DSEError("the study has no feasible completed trial to pick from")
    names, directions = config.objective_names(), config.directions()
    if canonical == "knee":
        loss = to_minimize(front[names].to_numpy(dtype=float), directions)
        span = loss.max(axis=0) - loss.min(axis=0)
        norm = (loss - loss.min(axis=0)) / np.where(span > 0, span, 1.0)
        return int(front["trial"].iloc[int(np.argmin(np.linalg.norm(norm, axis=1)))])
    if canonical == "max-hv-contribution":
        if reference is None:
            reference, _ = study_reference(front, config)
        contributions = hypervolume_contributions(front, config, reference)
        return int(front["trial"].iloc[int(np.argmax(contributions))])
    metric = canonical.removeprefix("best:")
    if metric not in front.columns or front[metric].isna().all():
        raise DSEError(f"the trials do not record the metric {metric!r}")
    direction = dict(zip(names, directions)).get(metric, METRICS[metric])
    column = front[metric].astype(float)
    return int(front.loc[column.idxmax() if direction == "maximize" else column.idxmin(), "trial"])


@dataclass(frozen=True)
class StudyAnalysis:
    """Everything the tables, plots and report show about one study."""

    config: StudyConfig
    trials: pd.DataFrame  # trials_table
    front: pd.DataFrame  # pareto_table, plus ``hv_contribution``
    reference: np.ndarray | None  # hypervolume reference point, objective units (None: no data)
    reference_source: str
    hypervolume: float
    history: pd.DataFrame  # hypervolume_history
    baseline_points: float | None
    baseline_points_by_task: dict[str, float] | None = None  # a multi-task study's
    approximations: dict[str, str] = field(default_factory=dict)  # task -> what its scores mean

    def picks(self) -> dict[str, int]:
        """The designs the report shows: knee, best accuracy, min energy, max HV contribution."""
        if self.front.empty:
            return {}
        wanted = ["knee", "max-accuracy", "min-energy", "max-hv-contribution"]
        out = {}
        for pick in wanted:
            try:
                out[pick] = pick_trial(self.front, self.config, pick, reference=self.reference)
            except DSEError:  # e.g. a study whose trials do not record energy
                continue
        return out


def analyse_study(study: optuna.Study, config: StudyConfig) -> StudyAnalysis:
    """Tables, reference point, hypervolume and its history, rebuilt from the storage."""
    trials = trials_table(study, config)
    front = pareto_table(trials, config)
    reference, source = study_reference(trials, config)
    hv, history = 0.0, pd.DataFrame({"trial": [], "feasible": [], "hypervolume": []})
    if reference is not None:
        history = hypervolume_history(trials, config, reference)
        if not front.empty:
            names = config.objective_names()
            hv = hypervolume(front[names].to_numpy(dtype=float), config.directions(), reference)
            front = front.assign(hv_contribution=hypervolume_contributions(front, config, reference))
    return StudyAnalysis(config=config, trials=trials, front=front, reference=reference,
                         reference_source=source, hypervolume=hv, history=history,
                         baseline_points=study.user_attrs.get("baseline_points"),
                         baseline_points_by_task=study.user_attrs.get("baseline_points_by_task"),
                         approximations=study.user_attrs.get("approximations") or {})

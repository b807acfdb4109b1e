"""Turn a study's trials into tables: all trials, the feasible Pareto front, hypervolume, picks."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd

from dse.config import StudyConfig
from dse.errors import DSEError

__all__ = [
    "feasible",
    "hypervolume",
    "pareto_mask",
    "pareto_table",
    "pick_trial",
    "trials_table",
]


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Feasible when every constraint value is <= 0 (Optuna's convention)."""
    return all(c <= 0 for c in _constraint_values(trial))


def _constraint_values(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Optuna 5 keeps named constraints (a dict); older trials may hold a sequence."""
    constraints = trial.constraints or []
    return list(constraints.values()) if isinstance(constraints, dict) else list(constraints)


def _to_minimize(values: np.ndarray, directions: list[str]) -> np.ndarray:
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return values * signs


def pareto_mask(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` ``[n, objectives]``."""
    loss = _to_minimize(np.asarray(values, dtype=float), directions)
    n = len(loss)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominated_by = np.all(loss <= loss[i], axis=1) & np.any(loss < loss[i], axis=1)
        mask[i] = not dominated_by.any()
    return mask


def hypervolume(values: np.ndarray, directions: list[str], reference: np.ndarray) -> float:
    """Exact hypervolume dominated by ``values`` up to ``reference`` (both in objective units)."""
    from optuna._hypervolume import compute_hypervolume  # the only exact implementation

    loss = _to_minimize(np.asarray(values, dtype=float), directions)
    ref = _to_minimize(np.asarray(reference, dtype=float)[None], directions)[0]
    loss = loss[np.all(loss < ref, axis=1)]
    if len(loss) == 0:
        return 0.0
    return float(compute_hypervolume(loss, ref))


def reference_point(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Nadir of the given values pushed 10% of the range outwards (a data-derived reference)."""
    loss = _to_minimize(np.asarray(values, dtype=float), directions)
    lo, hi = loss.min(axis=0), loss.max(axis=0)
    ref = hi + 0.1 * np.maximum(hi - lo, np.abs(hi) * 1e-3 + 1e-12)
    return _to_minimize(ref[None], directions)[0]


def trials_table(study: optuna.Study, config: StudyConfig) -> pd.DataFrame:
    """One row per finished or failed trial: number, state, objectives, metrics, knobs."""
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
        row["cache_hit"] = t.user_attrs.get("cache_hit")
        row["seconds"] = t.user_attrs.get("seconds")
        row["fail_reason"] = t.user_attrs.get("fail_reason")
        for name, value in t.user_attrs.get("knobs", t.params).items():
            row[f"knob.{name}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_table(trials: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Feasible, complete trials on the Pareto front, sorted by the first objective."""
    names = config.objective_names()
    if trials.empty:
        return trials
    done = trials[(trials["state"] == "COMPLETE") & trials["feasible"]].dropna(subset=names)
    if done.empty:
        return done
    front = done[pareto_mask(done[names].to_numpy(), config.directions())]
    ascending = config.directions()[0] == "minimize"
    return front.sort_values(names[0], ascending=ascending).reset_index(drop=True)


def pick_trial(front: pd.DataFrame, config: StudyConfig, pick: str) -> int:
    """Trial number chosen from the Pareto front: ``knee``, ``max-accuracy`` or ``min-energy``."""
    if front.empty:
        raise DSEError("the study has no feasible completed trial to pick from")
    names, directions = config.objective_names(), config.directions()
    if pick == "knee":
        loss = _to_minimize(front[names].to_numpy(dtype=float), directions)
        span = loss.max(axis=0) - loss.min(axis=0)
        norm = (loss - loss.min(axis=0)) / np.where(span > 0, span, 1.0)
        return int(front["trial"].iloc[int(np.argmin(np.linalg.norm(norm, axis=1)))])
    column, best = {"max-accuracy": ("accuracy", "idxmax"), "min-energy": ("energy_uj", "idxmin")}.get(
        pick, (None, None)
    )
    if column is None:
        raise DSEError(f"unknown pick {pick!r} (knee, max-accuracy, min-energy)")
    return int(front.loc[getattr(front[column], best)(), "trial"])

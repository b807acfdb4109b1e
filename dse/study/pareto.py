"""Feasibility and Pareto dominance of trials, as the coordinator records them.

Used by the cheap-knob sweep (which derived designs to record), the analysis (the front, the
hypervolume) and exports (a design's feasibility); pure numpy and Optuna's trial type.
"""

from __future__ import annotations

import numpy as np
import optuna

__all__ = ["constraint_values", "feasible", "pareto_mask", "to_minimize"]


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Feasible when every constraint value is <= 0 (Optuna's convention)."""
    return all(c <= 0 for c in constraint_values(trial))


def constraint_values(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Optuna 5 keeps named constraints (a dict); older trials may hold a sequence."""
    constraints = trial.constraints or []
    return list(constraints.values()) if isinstance(constraints, dict) else list(constraints)


def to_minimize(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """``values`` ``[..., objectives]`` with every maximized objective negated."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return values * signs


def pareto_mask(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` ``[n, objectives]``."""
    loss = to_minimize(np.asarray(values, dtype=float), directions)
    n = len(loss)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominated_by = np.all(loss <= loss[i], axis=1) & np.any(loss < loss[i], axis=1)
        mask[i] = not dominated_by.any()
    return mask

"""Feasibility and Pareto dominance of trials, as the coordinator records them.

Used by the cheap-knob sweep (which derived designs to record), the analysis (the front, the
hypervolume) and exports (a design's feasibility); pure numpy and Optuna's trial type.
"""

from __future__ import annotations

import numpy as np
import optuna

__all__ = ["FrontTracker", "constraint_values", "feasible", "named_constraints", "pareto_mask", "to_minimize"]


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Feasible when every constraint value is <= 0 (Optuna's convention)."""
    return all(c <= 0 for c in constraint_values(trial))


def constraint_values(trial: optuna.trial.FrozenTrial) -> list[float]:
    return list(named_constraints(trial).values())


def named_constraints(trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    """A trial's constraints, each once.

    Optuna 5 keeps named constraints (a dict); older trials may hold a sequence. The coordinator
    also stores the values as the legacy list optuna-dashboard reads, which Optuna reads back as
    "0", "1", ...: those copies are dropped when the named ones are there.
    """
    constraints = trial.constraints or {}
    if not isinstance(constraints, dict):
        return {str(i): float(v) for i, v in enumerate(constraints)}
    named = {k: float(v) for k, v in constraints.items() if not k.isdigit()}
    return named or {k: float(v) for k, v in constraints.items()}


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


class FrontTracker:
    """The non-dominated set of the points added so far, kept incrementally: adding a point
    compares it with the current front only (a study's coordinator adds every feasible trial)."""

    def __init__(self, directions: list[str]) -> None:
        self._signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
        self._loss = np.zeros((0, len(directions)))
        self.numbers: list[int] = []

    def add(self, values: list[float] | np.ndarray, number: int) -> bool:
        """Add a point (objective values, in the objectives' own directions); whether it is on the front."""
        loss = np.asarray(values, dtype=float) * self._signs
        if len(self._loss):
            if (np.all(self._loss <= loss, axis=1) & np.any(self._loss < loss, axis=1)).any() \
                    or np.all(self._loss == loss, axis=1).any():  # dominated, or a copy of a front point
                return False
            keep = ~(np.all(loss <= self._loss, axis=1) & np.any(loss < self._loss, axis=1))
            self._loss, self.numbers = self._loss[keep], [n for n, k in zip(self.numbers, keep) if k]
        self._loss = np.vstack([self._loss, loss[None]])
        self.numbers.append(number)
        return True

    @property
    def values(self) -> np.ndarray:
        """The front's objective values ``[points, objectives]``."""
        return self._loss * self._signs

    def __len__(self) -> int:
        return len(self._loss)

"""Feasibility and Pareto dominance (dse.study.pareto), against hand-computed cases."""

from __future__ import annotations

import numpy as np
import optuna

from dse.study.pareto import feasible, pareto_mask, to_minimize


def test_pareto_mask_mixed_directions() -> None:
    # (accuracy max, energy min): (90,5) and (80,2) trade off; (85,6) is dominated by (90,5)
    values = np.array([[90, 5], [80, 2], [85, 6], [90, 5]])
    assert pareto_mask(values, ["maximize", "minimize"]).tolist() == [True, True, False, True]


def test_to_minimize_negates_maximized_objectives() -> None:
    assert to_minimize(np.array([[90.0, 5.0]]), ["maximize", "minimize"]).tolist() == [[-90.0, 5.0]]


def test_feasible_reads_named_and_positional_constraints() -> None:
    def trial(constraints: object) -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(values=[1.0], system_attrs={"constraints": constraints})

    assert feasible(optuna.trial.create_trial(values=[1.0]))  # no constraint: feasible
    assert feasible(trial([0.0, -1.0])) and not feasible(trial([0.0, 0.5]))


def test_the_incremental_front_is_the_pareto_mask_of_every_point_added() -> None:
    from dse.study.pareto import FrontTracker

    rng = np.random.default_rng(3)
    directions = ["maximize", "minimize", "minimize"]
    points = rng.integers(0, 6, (300, 3)).astype(float)  # small integers: ties and copies happen
    tracker = FrontTracker(directions)
    for i, p in enumerate(points):
        tracker.add(p, i)
        expected = {tuple(q) for q in points[: i + 1][pareto_mask(points[: i + 1], directions)]}
        assert {tuple(q) for q in tracker.values} == expected
        assert len(tracker) == len(expected)  # each front point once
    assert all(tuple(points[n]) in expected for n in tracker.numbers)

"""Pareto front, hypervolume and picks, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dse.analysis.results import (check_pick, hypervolume, hypervolume_contributions, hypervolume_history,
                                  pareto_table, pick_label, pick_trial, study_reference)
from dse.config import parse_study_config
from dse.errors import DSEError


def test_hypervolume_2d_by_hand() -> None:
    # minimize both; points (1,3),(2,2),(3,1), reference (4,4):
    # staircase area = (4-1)*(4-3) + (4-2)*(3-2) + (4-3)*(2-1) = 3 + 2 + 1 = 6
    pts = np.array([[1, 3], [2, 2], [3, 1]])
    assert hypervolume(pts, ["minimize", "minimize"], np.array([4, 4])) == pytest.approx(6.0)
    # maximizing the first objective: flip it; accuracy 3,2,1 -> loss -3,-2,-1, ref accuracy 0
    acc = np.array([[3, 3], [2, 2], [1, 1]])
    # in loss space points (-3,3),(-2,2),(-1,1), ref (0,4): 3*1 + 2*1 + 1*1 = 6
    assert hypervolume(acc, ["maximize", "minimize"], np.array([0, 4])) == pytest.approx(6.0)


def test_hypervolume_3d_by_hand() -> None:
    # one point (1,1,1) with reference (2,3,4): box 1*2*3 = 6; adding (0,2,2) adds
    # box (2-0)*(3-2)*(4-2)=4 minus overlap (2-1)*(3-2)*(4-2)=2 -> 6 + 4 - 2 = 8
    pts = np.array([[1, 1, 1], [0, 2, 2]])
    assert hypervolume(pts, ["minimize"] * 3, np.array([2, 3, 4])) == pytest.approx(8.0)


CONFIG = parse_study_config(
    {"name": "t", "search_space": {"exit_threshold": {"type": "float", "low": 0, "high": 0.5}},
     "objectives": [{"name": "accuracy"}, {"name": "energy_uj"}]},
    source="test",
)


def _trials() -> pd.DataFrame:
    return pd.DataFrame({
        "trial": [0, 1, 2, 3, 4],
        "state": ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL", "COMPLETE"],
        "feasible": [True, True, True, True, False],
        "accuracy": [90.0, 80.0, 85.0, np.nan, 99.0],
        "energy_uj": [5.0, 2.0, 6.0, np.nan, 1.0],
    })


def test_pareto_table_skips_failed_and_infeasible() -> None:
    front = pareto_table(_trials(), CONFIG)
    assert front["trial"].tolist() == [0, 1]  # sorted by accuracy, best first


def test_picks() -> None:
    # three designs, each pick with one right answer: the knee gives up 1 point for 80% less energy
    front = pareto_table(pd.DataFrame({
        "trial": [0, 1, 2], "state": ["COMPLETE"] * 3, "feasible": [True] * 3,
        "accuracy": [90.0, 89.0, 80.0], "energy_uj": [10.0, 2.0, 1.0],
    }), CONFIG)
    assert front["trial"].tolist() == [0, 1, 2]
    assert pick_trial(front, CONFIG, "max-accuracy") == 0
    assert pick_trial(front, CONFIG, "min-energy") == 2
    # scaled to the front's range: distances to the ideal point are 1, 0.149, 1
    assert pick_trial(front, CONFIG, "knee") == 1
    with pytest.raises(DSEError):
        pick_trial(front.iloc[0:0], CONFIG, "knee")


# --- hypervolume with mixed directions, history, contributions, reference, picks ---------------

def test_hypervolume_3d_mixed_directions_by_hand() -> None:
    # accuracy max, energy min, latency min; A=(90,2,1), B=(80,1,2), reference (70,4,3).
    # In loss space A box = 20*2*2 = 80, B box = 10*3*1 = 30, overlap 10*2*1 = 20 -> 90.
    directions = ["maximize", "minimize", "minimize"]
    pts = np.array([[90, 2, 1], [80, 1, 2]])
    assert hypervolume(pts, directions, np.array([70, 4, 3])) == pytest.approx(90.0)
    # a point worse than the reference in one objective (energy 5 > 4) adds nothing
    more = np.vstack([pts, [[95, 5, 0.5]]])
    assert hypervolume(more, directions, np.array([70, 4, 3])) == pytest.approx(90.0)
    assert hypervolume(more[2:], directions, np.array([70, 4, 3])) == 0.0


MIN2 = parse_study_config(
    {"name": "m", "search_space": {"exit_threshold": {"type": "float", "low": 0, "high": 0.5}},
     "objectives": [{"name": "energy_uj"}, {"name": "latency_ms"}],
     "hypervolume_reference": {"energy_uj": 4.0, "latency_ms": 4.0}},
    source="test",
)


def _min2_trials(points: list[tuple[float, float]], feasible_flags: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({
        "trial": list(range(len(points))), "state": ["COMPLETE"] * len(points), "feasible": feasible_flags,
        "energy_uj": [p[0] for p in points], "latency_ms": [p[1] for p in points],
    })


def test_hypervolume_history_by_hand() -> None:
    # reference (4,4): (2,2) -> 4; infeasible (1,3) -> 4; dominated (3,3) -> 4;
    # feasible (1,3) -> 4 + 3 - overlap 2 = 5; (3,1) -> adds [3,4]x[1,2] = 1 -> 6
    trials = _min2_trials([(2, 2), (1, 3), (3, 3), (1, 3), (3, 1)], [True, False, True, True, True])
    ref, source = study_reference(trials, MIN2)
    assert ref.tolist() == [4.0, 4.0] and "study definition" in source
    history = hypervolume_history(trials.iloc[::-1], MIN2, ref)  # trial order, whatever the row order
    assert history["trial"].tolist() == [0, 1, 2, 3, 4]
    assert history["hypervolume"].tolist() == pytest.approx([4, 4, 4, 5, 6])
    assert history["feasible"].tolist() == [True, False, True, True, True]


def test_hypervolume_contributions_and_pick_by_hand() -> None:
    # front (1,3),(2,2),(3.5,1), reference (4,4): total 3 + 2 + 0.5 = 5.5;
    # without (1,3): 4 + 0.5 -> 1.0; without (2,2): 3 + 1 -> 1.5; without (3.5,1): 5 -> 0.5
    trials = _min2_trials([(1, 3), (2, 2), (3.5, 1)], [True] * 3)
    front = pareto_table(trials, MIN2)
    contrib = hypervolume_contributions(front, MIN2, np.array([4.0, 4.0]))
    assert dict(zip(front["trial"], contrib)) == pytest.approx({0: 1.0, 1: 1.5, 2: 0.5})
    assert pick_trial(front, MIN2, "max-hv-contribution") == 1  # the study's reference by default
    # a reference that cuts (2,2) away changes the answer: only (1,3) and (3.5,1) count
    assert pick_trial(front, MIN2, "max-hv-contribution", reference=np.array([4.0, 2.0])) == 2


def test_data_derived_reference_is_reported_as_such() -> None:
    trials = _trials()
    ref, source = study_reference(trials, CONFIG)  # CONFIG sets no reference
    assert "derived from the data" in source
    # 10% of the completed trials' range beyond their nadir: accuracy 61 -> 99 range 38; energy 1 -> 6
    assert ref.tolist() == pytest.approx([80.0 - 0.1 * 19.0, 6.0 + 0.1 * 5.0])
    assert study_reference(trials.iloc[0:0], CONFIG)[0] is None


def test_knee_and_best_of_any_metric() -> None:
    trials = pd.DataFrame({
        "trial": [10, 11, 12], "state": ["COMPLETE"] * 3, "feasible": [True] * 3,
        "accuracy": [90.0, 89.0, 80.0], "energy_uj": [10.0, 2.0, 1.0], "latency_ms": [3.0, 1.0, 2.0],
    })
    front = pareto_table(trials, CONFIG)
    # normalised distances to the ideal point: (0,1) -> 1, (0.1,0.11) -> 0.15, (1,0) -> 1
    assert pick_trial(front, CONFIG, "knee") == 11
    assert pick_trial(front, CONFIG, "best:accuracy") == pick_trial(front, CONFIG, "max-accuracy") == 10
    assert pick_trial(front, CONFIG, "best:energy_uj") == pick_trial(front, CONFIG, "min-energy") == 12
    assert pick_trial(front, CONFIG, "best:latency_ms") == 11  # a metric that is not an objective


def test_unknown_picks_are_one_line_errors() -> None:
    front = pareto_table(_trials(), CONFIG)
    with pytest.raises(DSEError, match="unknown pick 'best'"):
        pick_trial(front, CONFIG, "best")
    with pytest.raises(DSEError, match="unknown metric 'speed'"):
        check_pick("best:speed")
    with pytest.raises(DSEError, match="do not record the metric .area_mm2."):
        pick_trial(front, CONFIG, "best:area_mm2")
    assert check_pick("max-accuracy") == "best:accuracy" and pick_label("best:latency_ms") == "best-latency_ms"


def test_hypervolume_contributions_3d_by_hand() -> None:
    # minimize three; A=(1,1,1) box to (2,3,4) = 1*2*3 = 6, B=(0,2,2) box = 2*1*2 = 4,
    # overlap [1,2]x[2,3]x[2,4] = 2: total 8. C=(1.5,1.5,1.5) is dominated by A only, D=(3,0,0) lies
    # beyond the reference. Without A: B 4 + C 0.5*1.5*2.5 - their overlap 0.5*1*2 = 4.875, so A
    # adds 8 - 4.875 = 3.125; without B: 6, so B adds 2; C and D add nothing
    config = parse_study_config(
        {"name": "m3", "search_space": {"exit_threshold": {"type": "float", "low": 0, "high": 0.5}},
         "objectives": [{"name": "energy_uj"}, {"name": "latency_ms"}, {"name": "memory_mb"}]},
        source="test",
    )
    front = pd.DataFrame({"energy_uj": [1, 0, 1.5, 3], "latency_ms": [1, 2, 1.5, 0], "memory_mb": [1, 2, 1.5, 0]})
    ref = np.array([2.0, 3.0, 4.0])
    assert hypervolume(front.to_numpy(), ["minimize"] * 3, ref) == pytest.approx(8.0)
    contrib = hypervolume_contributions(front, config, ref)
    assert contrib.tolist() == pytest.approx([3.125, 2.0, 0.0, 0.0])


def test_hypervolume_uses_a_public_library() -> None:
    # optuna._hypervolume is private (it may change in any release); moocore computes it
    import inspect

    import dse.analysis.results as results

    source = inspect.getsource(results)
    assert "optuna._hypervolume" not in source and "moocore" in source

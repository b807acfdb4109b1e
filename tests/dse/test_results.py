"""Pareto front, hypervolume and picks, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dse.config import parse_study_config
from dse.errors import DSEError
from dse.results import hypervolume, pareto_mask, pareto_table, pick_trial


def test_pareto_mask_mixed_directions() -> None:
    # (accuracy max, energy min): (90,5) and (80,2) trade off; (85,6) is dominated by (90,5)
    values = np.array([[90, 5], [80, 2], [85, 6], [90, 5]])
    assert pareto_mask(values, ["maximize", "minimize"]).tolist() == [True, True, False, True]


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
    front = pareto_table(_trials(), CONFIG)
    assert pick_trial(front, CONFIG, "max-accuracy") == 0
    assert pick_trial(front, CONFIG, "min-energy") == 1
    assert pick_trial(front, CONFIG, "knee") in (0, 1)
    with pytest.raises(DSEError):
        pick_trial(front.iloc[0:0], CONFIG, "knee")

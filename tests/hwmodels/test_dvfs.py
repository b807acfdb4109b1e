"""V/f curve, DVFS grid and the exit predictor (hw-constants §5.3)."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import fit_exit_predictor, voltage_frequency_points
from hwmodels import dvfs


def test_alpha_power_law_points() -> None:
    # f/f0 = ((V-0.35)^1.43/V) / ((0.45)^1.43/0.8): 0.333 at 0.5 V, 0.575 at 0.6 V, 0.798 at 0.7 V (§5.3)
    assert dvfs.frequency_mhz(0.8) == pytest.approx(1000.0)
    assert dvfs.frequency_mhz(0.5) == pytest.approx(333.0, rel=0.01)
    assert dvfs.frequency_mhz(0.6) == pytest.approx(575.0, rel=0.01)
    assert dvfs.frequency_mhz(0.7) == pytest.approx(798.0, rel=0.01)


def test_grid() -> None:
    volts, freqs = voltage_frequency_points()
    assert volts.size == 13 and volts[0] == pytest.approx(0.5) and volts[-1] == pytest.approx(0.8)
    assert np.allclose(np.diff(volts), 0.025)
    assert np.all(np.diff(freqs) > 0)


@pytest.mark.parametrize("bad", [0.45, 0.85, float("nan")])
def test_voltage_outside_table_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="voltage must be within 0.50..0.80 V"):
        dvfs.frequency_mhz(bad)


def test_exit_predictor_hand_case() -> None:
    # two bins split at the median entropy 0.5; low-entropy exits {1,2,2,3}, high {5,6,6,8}
    entropy = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    exits = np.array([1, 2, 2, 3, 5, 6, 6, 8])
    predictor = fit_exit_predictor(entropy, exits, n_bins=2, quantile=0.75)
    assert predictor.inner_edges == pytest.approx([0.5])
    # 'higher' 0.75 quantile of {1,2,2,3} = 3 ; of {5,6,6,8} = 8
    assert predictor.exit_layer_per_bin.tolist() == [3, 8]
    assert predictor.predict(np.array([0.0, 0.49, 0.5, 5.0])).tolist() == [3, 3, 8, 8]


def test_exit_predictor_is_monotone_and_fills_empty_bins() -> None:
    rng = np.random.default_rng(1)
    entropy = rng.random(500)
    exits = np.clip(np.round(entropy * 11 + 1 + rng.normal(0, 1, 500)), 1, 12).astype(int)
    predictor = fit_exit_predictor(entropy, exits, n_bins=16)
    assert predictor.n_bins == 16
    assert np.all(np.diff(predictor.exit_layer_per_bin) >= 0)
    predictor_ties = fit_exit_predictor(np.zeros(10), np.arange(1, 11), n_bins=4, quantile=1.0)
    assert predictor_ties.predict(0.0) == 10


def test_exit_predictor_bad_inputs() -> None:
    with pytest.raises(ValueError, match="equal, non-zero numbers"):
        fit_exit_predictor(np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="exit layers must be integers >= 1"):
        fit_exit_predictor(np.zeros(2), np.array([0, 1]))

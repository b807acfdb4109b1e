"""Hand-computed checks of dse.data.metrics (the arithmetic is in the comments), and the correlations are scipy's."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from dse.data.metrics import (
    accuracy,
    compute_metrics,
    f1_binary,
    main_metric,
    matthews_corrcoef,
    pearson,
    spearman,
)
from dse.errors import DataError

# Shared binary example:
#   pred   = [1, 1, 0, 1, 0]
#   labels = [1, 0, 0, 1, 1]
#   TP = 2 (positions 0, 3), FP = 1 (position 1), TN = 1 (position 2), FN = 1 (position 4)
PRED = [1, 1, 0, 1, 0]
LABELS = [1, 0, 0, 1, 1]


def test_accuracy_hand_value():
    # 3 of 5 equal (positions 0, 2, 3) -> 3/5 = 0.6
    assert accuracy(PRED, LABELS) == pytest.approx(0.6)
    # a fraction, not a percentage
    assert accuracy([0, 1], [0, 1]) == 1.0
    assert accuracy([1, 1, 1, 1], [1, 1, 1, 0]) == pytest.approx(0.75)


def test_f1_hand_value():
    # F1 = 2TP / (2TP + FP + FN) = 4 / (4 + 1 + 1) = 2/3
    assert f1_binary(PRED, LABELS) == pytest.approx(2 / 3)
    # precision 1/2, recall 1/1 -> F1 = 2 * 0.5 * 1 / 1.5 = 2/3 (same formula: 2*1/(2+1+0))
    assert f1_binary([1, 1, 0], [1, 0, 0]) == pytest.approx(2 / 3)


def test_mcc_binary_hand_value():
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))
    #     = (2*1 - 1*1) / sqrt(3 * 3 * 2 * 2) = 1 / 6
    assert matthews_corrcoef(PRED, LABELS) == pytest.approx(1 / 6)
    assert matthews_corrcoef([0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(1.0)
    assert matthews_corrcoef([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)


def test_mcc_multiclass_hand_value():
    # labels y = [0,0,1,1,2,2], pred p = [0,1,1,1,2,0]
    # confusion (rows true, cols pred): [[1,1,0],[0,2,0],[1,0,1]]
    # correct c = 4, n s = 6, true counts t = [2,2,2], pred counts p = [2,3,1]
    # MCC = (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)) = (24 - 12) / sqrt((36 - 14)(36 - 12)) = 12 / sqrt(528)
    y = [0, 0, 1, 1, 2, 2]
    p = [0, 1, 1, 1, 2, 0]
    assert matthews_corrcoef(p, y) == pytest.approx(12 / math.sqrt(528))
    assert matthews_corrcoef(p, y) == pytest.approx(0.5222329678670935)


def test_pearson_hand_value():
    # x = [1,2,3] (mean 2), y = [1,2,5] (mean 8/3)
    # dx = [-1,0,1], dy = [-5/3,-2/3,7/3]; sum dx*dy = 5/3 + 7/3 = 4
    # sum dx^2 = 2, sum dy^2 = (25+4+49)/9 = 26/3
    # r = 4 / sqrt(2 * 26/3) = 4 / sqrt(52/3)
    assert pearson([1, 2, 3], [1, 2, 5]) == pytest.approx(4 / math.sqrt(52 / 3))
    assert pearson([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(1.0)
    assert pearson([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_spearman_hand_value_with_ties():
    # ranks of x = [1,2,3,4] -> [1,2,3,4]; y = [10,20,20,40] -> [1,2.5,2.5,4] (tie gets the average rank)
    # dx = [-1.5,-0.5,0.5,1.5], dy = [-1.5,0,0,1.5]; sum dx*dy = 2.25 + 2.25 = 4.5
    # sum dx^2 = 5, sum dy^2 = 4.5 -> rho = 4.5 / sqrt(22.5) = sqrt(0.9)
    assert spearman([1, 2, 3, 4], [10, 20, 20, 40]) == pytest.approx(math.sqrt(0.9))
    # monotone but non-linear -> rho = 1 while Pearson < 1
    x = [1.0, 2.0, 3.0, 4.0]
    y = [1.0, 8.0, 27.0, 64.0]
    assert spearman(x, y) == pytest.approx(1.0)
    assert pearson(x, y) < 0.99


def test_degenerate_cases_defined_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning (0/0, nan) would fail the test
        # no positives anywhere: TP = 0 -> F1 = 0.0
        assert f1_binary([0, 0, 0], [0, 0, 0]) == 0.0
        # positives predicted but none true (TP = 0) -> 0.0
        assert f1_binary([1, 1, 0], [0, 0, 0]) == 0.0
        # constant prediction -> MCC denominator 0 -> 0.0
        assert matthews_corrcoef([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0
        assert matthews_corrcoef([0, 0, 0], [0, 0, 0]) == 0.0
        # constant predictions / labels -> correlations 0.0
        assert pearson([2.5, 2.5, 2.5], [1.0, 2.0, 3.0]) == 0.0
        assert pearson([0.1] * 10, list(range(10))) == 0.0
        assert spearman([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]) == 0.0
        # single example
        assert accuracy([1], [1]) == 1.0
        assert matthews_corrcoef([1], [1]) == 0.0


def test_invalid_inputs_raise_value_error():
    with pytest.raises(ValueError, match="length"):
        accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="zero examples"):
        accuracy([], [])
    with pytest.raises(ValueError, match="1-D"):
        accuracy(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        pearson([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        spearman([1.0, 2.0], [1.0, float("inf")])


def test_compute_metrics_per_task():
    assert compute_metrics("sst2", np.array(PRED), np.array(LABELS)) == {"accuracy": pytest.approx(0.6)}
    assert compute_metrics("MRPC", np.array(PRED), np.array(LABELS)) == {
        "accuracy": pytest.approx(0.6),
        "f1": pytest.approx(2 / 3),
    }
    assert list(compute_metrics("qqp", np.array(PRED), np.array(LABELS))) == ["accuracy", "f1"]
    assert compute_metrics("CoLA", np.array(PRED), np.array(LABELS)) == {"matthews": pytest.approx(1 / 6)}
    stsb = compute_metrics("STS-B", np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, 20.0, 40.0]))
    assert list(stsb) == ["pearson", "spearman"]
    assert stsb["spearman"] == pytest.approx(math.sqrt(0.9))
    for v in compute_metrics("mnli", np.array([0, 1, 2]), np.array([0, 1, 1])).values():
        assert isinstance(v, float)


def test_compute_metrics_accepts_logits_and_column_vectors():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])  # argmax -> [1, 0, 1]
    assert compute_metrics("rte", logits, np.array([1, 0, 0])) == {"accuracy": pytest.approx(2 / 3)}
    # STS-B regression head output of shape (n, 1)
    out = compute_metrics("stsb", np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2.0, 5.0]))
    assert out["pearson"] == pytest.approx(4 / math.sqrt(52 / 3))


def test_main_metric():
    assert main_metric("mrpc", PRED, LABELS) == pytest.approx(2 / 3)  # F1
    assert main_metric("qqp", PRED, LABELS) == pytest.approx(2 / 3)  # F1
    assert main_metric("cola", PRED, LABELS) == pytest.approx(1 / 6)  # Matthews
    assert main_metric("sst2", PRED, LABELS) == pytest.approx(0.6)  # accuracy
    assert main_metric("stsb", [1, 2, 3, 4], [10, 20, 20, 40]) == pytest.approx(math.sqrt(0.9))  # Spearman


def test_unknown_task_is_data_error():
    with pytest.raises(DataError, match="unknown GLUE task"):
        compute_metrics("squad", np.array([1]), np.array([1]))


def test_correlations_are_scipys() -> None:
    # scipy.stats computes them (no hand-written ranking to drift from it); ties get average ranks
    import inspect

    from scipy import stats

    import dse.data.metrics as metrics

    assert "stats.pearsonr" in inspect.getsource(metrics) and "stats.spearmanr" in inspect.getsource(metrics)
    gen = np.random.default_rng(0)
    x, y = gen.integers(0, 5, 50).astype(float), gen.normal(size=50)
    assert pearson(x, y) == stats.pearsonr(x, y).statistic
    assert spearman(x, y) == stats.spearmanr(x, y).statistic

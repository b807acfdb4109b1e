"""GLUE metrics in numpy, with scipy's correlations (no downloads, no sklearn/evaluate).

All functions take 1-D array-likes of equal, non-zero length and return a Python ``float``. Values are
fractions, not percentages: accuracy and F1 lie in [0, 1], correlations (Matthews, Pearson, Spearman) in
[-1, 1].

Degenerate cases are defined instead of producing NaN or numpy warnings:

* F1 with no true positives (in particular: no positive labels and no positive predictions) is 0.0;
* Matthews correlation is 0.0 when predictions or labels are constant (zero denominator, as in sklearn);
* Pearson and Spearman are 0.0 when predictions or labels are constant.

Invalid inputs (empty, mismatched lengths, more than one dimension, NaN/inf) raise ``ValueError``.
"""

from __future__ import annotations

import math

import numpy as np

from dse.config.tasks import task_spec

__all__ = [
    "accuracy",
    "compute_metrics",
    "f1_binary",
    "main_metric",
    "matthews_corrcoef",
    "pearson",
    "spearman",
]


def _as_1d(x, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    return arr


def _pair(pred, labels) -> tuple[np.ndarray, np.ndarray]:
    p = _as_1d(pred, "predictions")
    y = _as_1d(labels, "labels")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"predictions and labels differ in length ({p.shape[0]} vs {y.shape[0]})")
    if p.shape[0] == 0:
        raise ValueError("cannot compute a metric on zero examples")
    return p, y


def _as_finite_float(x: np.ndarray, name: str) -> np.ndarray:
    try:
        arr = x.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


def accuracy(pred, labels) -> float:
    """Fraction of predictions equal to the labels."""
    p, y = _pair(pred, labels)
    return float(np.mean(p == y))


def f1_binary(pred, labels) -> float:
    """F1 of the positive class (label 1): 2*TP / (2*TP + FP + FN); 0.0 when TP == 0."""
    p, y = _pair(pred, labels)
    pp = p == 1
    yp = y == 1
    tp = int(np.count_nonzero(pp & yp))
    fp = int(np.count_nonzero(pp & ~yp))
    fn = int(np.count_nonzero(~pp & yp))
    if tp == 0:
        return 0.0
    return float(2 * tp / (2 * tp + fp + fn))


def matthews_corrcoef(pred, labels) -> float:
    """Matthews correlation coefficient (multi-class form of Gorodkin 2004, equal to the binary MCC for 2
    classes); 0.0 when the denominator is zero (constant predictions or constant labels)."""
    p, y = _pair(pred, labels)
    classes, inv = np.unique(np.concatenate([y, p]), return_inverse=True)
    k = classes.shape[0]
    n = y.shape[0]
    yi, pi = inv[:n], inv[n:]
    conf = np.bincount(yi * k + pi, minlength=k * k).reshape(k, k).astype(np.float64)  # rows: true
    t_sum = conf.sum(axis=1)
    p_sum = conf.sum(axis=0)
    correct = float(np.trace(conf))
    s = float(n)
    cov_yp = correct * s - float(t_sum @ p_sum)
    cov_pp = s * s - float(p_sum @ p_sum)
    cov_yy = s * s - float(t_sum @ t_sum)
    denom = cov_pp * cov_yy
    if denom <= 0.0:
        return 0.0
    return float(np.clip(cov_yp / math.sqrt(denom), -1.0, 1.0))


def _correlation(kind: str, x: np.ndarray, y: np.ndarray) -> float:
    """scipy's Pearson or Spearman (average ranks for ties); 0.0 when either side is constant,
    where scipy warns and returns NaN."""
    from scipy import stats

    if np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    result = stats.pearsonr(x, y) if kind == "pearson" else stats.spearmanr(x, y)
    return float(np.clip(result.statistic, -1.0, 1.0))


def pearson(pred, labels) -> float:
    """Pearson correlation; 0.0 when either side is constant."""
    p, y = _pair(pred, labels)
    return _correlation("pearson", _as_finite_float(p, "predictions"), _as_finite_float(y, "labels"))


def spearman(pred, labels) -> float:
    """Spearman rank correlation (Pearson on average ranks); 0.0 when either side is constant."""
    p, y = _pair(pred, labels)
    return _correlation("spearman", _as_finite_float(p, "predictions"), _as_finite_float(y, "labels"))


_METRIC_FUNCS = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "matthews": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


def _prepare(task: str, predictions, labels):
    spec = task_spec(task)
    pred = np.asarray(predictions)
    if not spec.is_regression and pred.ndim == 2 and pred.shape[1] > 1:
        pred = pred.argmax(axis=-1)  # logits / probabilities -> class ids
    return spec, pred, np.asarray(labels)


def compute_metrics(task: str, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics by name, in ``TaskSpec.metrics`` order.

    ``predictions`` are class ids (a 2-D array of per-class scores is reduced with argmax) or, for STS-B,
    floats. Unknown tasks raise ``DataError``; invalid arrays raise ``ValueError``.
    """
    spec, pred, y = _prepare(task, predictions, labels)
    return {name: _METRIC_FUNCS[name](pred, y) for name in spec.metrics}


def main_metric(task: str, predictions, labels) -> float:
    """The task's main metric (``TaskSpec.main_metric``): F1 for MRPC/QQP, Spearman for STS-B, Matthews for
    CoLA, accuracy otherwise."""
    spec, pred, y = _prepare(task, predictions, labels)
    return _METRIC_FUNCS[spec.main_metric](pred, y)

"""Bits a weight matrix occupies in each sparse storage format (what the chip really holds).

An (M x N1) weight matrix (M inputs, N1 outputs) of n-bit AdaptivFloat values, density d, on a
datapath of V-wide vectors (each vector of V weight positions carries a b = 3-bit exponent bias):

* ``dense``:   M*N1*n + M*N1*b/V                      every position stored, no mask
* ``bitmask``: nnz*n + M*N1 + M*N1*b/V                non-zeros plus one mask bit per position (EdgeBERT)
* ``relative_index`` (EIE, Han et al. ISCA 2016): each column (the M weights of one output) is a list
  of entries (value, k-bit index = zeros skipped since the previous entry, k = 4). A gap of g zeros
  before a non-zero needs floor(g / 2^k) padding entries (a stored zero with index 2^k - 1), so
      entries = nnz + sum over non-zeros of floor(g / 2^k)
      bits    = entries*(n + k) + (N1 + 1)*p + M*N1*b/V,   p = ceil(log2(M*N1 + 1)) pointer bits
  (CSC column pointers; zeros after a column's last non-zero are not stored).

:func:`matrix_storage_bits` counts these exactly for a given matrix; :func:`expected_storage_bits`
is what the cost model uses from the density alone: the same formulas with nnz = d*M*N1 and the
expected padding of a random pattern, every position non-zero independently with probability d.
A non-zero at row p (0-based) has a gap g >= i*m with probability r^i (r = (1-d)^m, m = 2^k) for
i*m <= p (the column's start cuts longer gaps), so with K_p = floor(p/m)
    E[padding per column] = d * sum_p sum_{i=1..K_p} r^i = d * r/(1-r) * (M - sum_p r^K_p),
    sum_p r^K_p = m * (1 - r^B)/(1 - r) + (M - B*m) * r^B,   B = floor(M/m).
"""

from __future__ import annotations

import numpy as np

from hwmodels import techdata

SPARSE_FORMATS: tuple[str, ...] = ("dense", "bitmask", "relative_index")
INDEX_BITS = int(techdata.value("accelerator", "sparse_storage", "relative_index_bits"))
_PTR_EXTRA = int(techdata.value("accelerator", "sparse_storage", "column_pointer_count_extra"))
BIAS_BITS_PER_VECTOR = techdata.number("accelerator", "adaptivfloat_hw", "bias_bits_per_vector")

ArrayLike = np.ndarray | float | int


def format_index(name: str) -> int:
    """Position of ``name`` in :data:`SPARSE_FORMATS` (ValueError if unknown)."""
    if name not in SPARSE_FORMATS:
        raise ValueError(f"unknown sparse format {name!r}; expected one of {', '.join(SPARSE_FORMATS)}")
    return SPARSE_FORMATS.index(name)


def pointer_bits(m: int, n1: int) -> int:
    """Width of one CSC column pointer: enough to address every entry (at most M*N1)."""
    return int(np.ceil(np.log2(m * n1 + 1)))


def expected_padding_per_position(density: ArrayLike, column_length: int,
                                  index_bits: int = INDEX_BITS) -> np.ndarray:
    """Expected padding entries per weight position of a random pattern in columns of
    ``column_length`` rows (module docstring)."""
    d = np.asarray(density, dtype=float)
    m = 2 ** index_bits
    r = (1.0 - d) ** m
    blocks = column_length // m
    with np.errstate(divide="ignore", invalid="ignore"):
        geometric = np.where(r < 1.0, (1.0 - r ** blocks) / (1.0 - r), float(blocks))  # sum_{K<B} r^K
        sum_r = m * geometric + (column_length - blocks * m) * r ** blocks
        pads = np.where(r < 1.0, d * r / (1.0 - r) * (column_length - sum_r), 0.0)
    return np.maximum(pads, 0.0) / column_length


def expected_storage_bits(fmt_index: ArrayLike, m: int, n1: int, density: ArrayLike, weight_bits: ArrayLike,
                          vector: ArrayLike, index_bits: int = INDEX_BITS) -> tuple[np.ndarray, np.ndarray]:
    """(data bits, mask bits) of one M x N1 matrix by format (arrays broadcast); mask bits are the
    bitmask format's, which sit in the mask buffer, and are 0 for the other formats."""
    fmt = np.asarray(fmt_index)
    d = np.asarray(density, dtype=float)
    n_w = np.asarray(weight_bits, dtype=float)
    positions = float(m) * n1
    bias = positions * BIAS_BITS_PER_VECTOR / np.asarray(vector, dtype=float)
    dense = positions * n_w + bias
    bitmask_values = positions * d * n_w + bias
    entries = positions * (d + expected_padding_per_position(d, m, index_bits))
    relative = entries * (n_w + index_bits) + (n1 + _PTR_EXTRA) * pointer_bits(m, n1) + bias
    data = np.where(fmt == 0, dense, np.where(fmt == 1, bitmask_values, relative))
    mask = np.where(fmt == 1, positions, 0.0)
    return data, mask


def matrix_storage_bits(weight: np.ndarray, fmt: str, weight_bits: int, vector: int,
                        index_bits: int = INDEX_BITS) -> float:
    """Exact bits of ``weight`` (shape [M, N1]: a column = one output's M weights) in format ``fmt``."""
    w = np.asarray(weight)
    if w.ndim != 2:
        raise ValueError(f"weight must be a 2-D [M, N1] matrix, got shape {w.shape}")
    m, n1 = w.shape
    positions = m * n1
    bias = positions * BIAS_BITS_PER_VECTOR / vector
    nonzero = w != 0
    nnz = int(nonzero.sum())
    if fmt == "dense":
        return positions * weight_bits + bias
    if fmt == "bitmask":
        return nnz * weight_bits + positions + bias
    if fmt == "relative_index":
        span = 2 ** index_bits
        pads = 0
        for col in nonzero.T:
            rows = np.flatnonzero(col)
            gaps = np.diff(np.concatenate([[-1], rows])) - 1  # zeros before each non-zero
            pads += int(np.sum(gaps // span))
        return (nnz + pads) * (weight_bits + index_bits) + (n1 + _PTR_EXTRA) * pointer_bits(m, n1) + bias
    raise ValueError(f"unknown sparse format {fmt!r}; expected one of {', '.join(SPARSE_FORMATS)}")

"""eNVM fault injection into the stored embedding tables (EdgeBERT's multi-level-cell risk), and
into the weight matrices when they too live in the eNVM array (the ``weight_store: envm`` knob).

The word/position/token-type tables sit in an eNVM array as AdaptivFloat codes of
``weight_bits`` bits. A table's codes are packed densely, least significant bit first, into
cells of ``bits_per_cell`` bits (the cell's tech data, ``hwmodels/data/envm.yaml``); a cell
stores its bits as one of ``2^bits_per_cell`` levels. Levels are **Gray coded** (as MLC
arrays do, so that the common adjacent-level error costs one bit): a faulty cell moves to an
adjacent level (up or down with equal chance; the lowest and highest levels have one
neighbour), which flips exactly one of its bits. Each cell is faulty independently with the
cell's adjacent-level error probability. The corrupted codes are decoded back to values, so
every value stays representable in the format. Weight matrices stored sparse (bitmask or
relative index) keep only their non-zero values in the array, so only those codes take faults
and a pruned weight stays zero (faults in the mask or index bits are not modelled); stored dense,
every code does.

Error probabilities (per cell and read, i.e. per stored copy) are the cell's
``adjacent_level_error_prob`` in the hardware model's cell table (``hwmodels/data/envm.yaml``),
the one place they are kept, each with its source. They come from the MLC-RRAM Gaussian level
model of NVMExplorer's fault injector (Pentecost et al., "NVMExplorer: A Framework for Cross-Stack
Comparisons of Embedded Non-Volatile Memories", HPCA 2022, arXiv:2109.01188; lpentecost/NVMExplorer
``nvmexplorer_src/nvmFI/nvm_data/mlc_rram_args.p``): about 1e-8 for 2 bits/cell and
1.5e-4 ... 6.3e-3 for 3 bits/cell, of which the table keeps the geometric mean 9.7e-4
(override per cell). Single-level cells (SRAM, ReRAM SLC, STT-MRAM, PCM, FeFET) are taken as
error-free. The sources give no MLC FeFET level model; the table assumes the 2-bit ReRAM figure.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dse.compression.adaptivfloat import AdaptivFloatFormat, decode, encode, exponent_bias
from hwmodels.envm import ENVM_CELLS, envm_cell

__all__ = ["CELL_ERROR_PROB", "bits_per_cell", "cell_error_prob", "inject_code_faults",
           "inject_table_faults", "inject_weight_faults", "levels_per_cell"]

# Adjacent-level error probability per cell read: the hardware model's cell table, read once.
CELL_ERROR_PROB: dict[str, float] = {name: envm_cell(name).adjacent_level_error_prob for name in ENVM_CELLS}


def bits_per_cell(cell: str) -> int:
    """Bits one cell stores (the hardware model's tech data)."""
    return envm_cell(cell).bits_per_cell


def levels_per_cell(cell: str) -> int:
    return 2 ** bits_per_cell(cell)


def cell_error_prob(cell: str, *, scale: float = 1.0, overrides: dict[str, float] | None = None) -> float:
    """Adjacent-level error probability of ``cell`` times ``scale`` (capped at 1)."""
    if cell not in CELL_ERROR_PROB:
        raise ValueError(f"no error probability for eNVM cell {cell!r}; known: {', '.join(CELL_ERROR_PROB)}")
    base = (overrides or {}).get(cell, CELL_ERROR_PROB[cell])
    if not 0.0 <= base <= 1.0:  # also catches NaN, a cell the table gives no probability
        raise ValueError(f"error probability of eNVM cell {cell!r} must be in [0, 1], got {base}")
    return min(1.0, base * scale)


def _gray(level: np.ndarray) -> np.ndarray:
    return level ^ (level >> 1)


def _from_gray(bits: np.ndarray, width: int) -> np.ndarray:
    level = bits.copy()
    for shift in range(1, width):
        level ^= bits >> shift
    return level


def inject_code_faults(codes: np.ndarray, *, code_bits: int, cell_bits: int, error_prob: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Codes (int64, ``code_bits`` wide, packed LSB first into ``cell_bits``-bit cells) after
    adjacent-level errors; returns (new codes, number of faulty cells)."""
    if not 0.0 <= error_prob <= 1.0:
        raise ValueError(f"error probability must be in [0, 1], got {error_prob}")
    flat = np.asarray(codes, dtype=np.int64).reshape(-1)
    n_cells = -(-flat.size * code_bits // cell_bits)  # the last cell may hold padding bits
    faulty = int(rng.binomial(n_cells, error_prob)) if n_cells else 0
    out = flat.copy()
    if faulty == 0:
        return out.reshape(np.shape(codes)), 0
    cells = np.sort(rng.choice(n_cells, size=faulty, replace=False))
    # the cell's stored bits, gathered from the (possibly two) codes it spans
    first_bit = cells * cell_bits
    stored = np.zeros(faulty, dtype=np.int64)
    for j in range(cell_bits):
        pos = first_bit + j
        inside = pos < flat.size * code_bits
        word = np.minimum(pos // code_bits, flat.size - 1)
        bit = (flat[word] >> (pos % code_bits)) & 1
        stored |= np.where(inside, bit, 0) << j
    level = _from_gray(stored, cell_bits)
    top = 2**cell_bits - 1
    step = np.where(rng.random(faulty) < 0.5, -1, 1)
    step = np.where(level == 0, 1, np.where(level == top, -1, step))
    changed = stored ^ _gray(level + step)  # exactly one bit (Gray code)
    for j in range(cell_bits):
        pos = first_bit + j
        hit = ((changed >> j) & 1).astype(bool) & (pos < flat.size * code_bits)  # padding: no word
        np.bitwise_xor.at(out, pos[hit] // code_bits, np.int64(1) << (pos[hit] % code_bits))
    return out.reshape(np.shape(codes)), faulty


@torch.no_grad()
def inject_table_faults(tables: dict[str, nn.Embedding], fmt: AdaptivFloatFormat, *, cell: str,
                        error_prob: float, seed: int | list[int]) -> int:
    """Corrupt, in place, AdaptivFloat-quantized tables as stored in ``cell``; faulty cells.

    Each table is its own array region with its own per-tensor bias (recomputed from the
    quantized values, which keep the original's). Seeded: the same seed gives the same faults.
    """
    return _inject(list(tables.values()), fmt, cell=cell, error_prob=error_prob, seed=seed, nonzero_only=False)


@torch.no_grad()
def inject_weight_faults(modules: dict[str, nn.Module], fmt: AdaptivFloatFormat, *, cell: str, error_prob: float,
                         seed: int | list[int], nonzero_only: bool) -> int:
    """Corrupt, in place, AdaptivFloat-quantized weight matrices as stored in ``cell``; faulty
    cells. ``nonzero_only``: a sparse format stores only the non-zero values (pruned weights stay
    zero). A module listed twice (ALBERT's shared layers) is one stored matrix, corrupted once."""
    unique = list({id(m): m for m in modules.values()}.values())
    return _inject(unique, fmt, cell=cell, error_prob=error_prob, seed=seed, nonzero_only=nonzero_only)


def _inject(modules: list[nn.Module], fmt: AdaptivFloatFormat, *, cell: str, error_prob: float,
            seed: int | list[int], nonzero_only: bool) -> int:
    width = bits_per_cell(cell)
    rng = np.random.default_rng(seed)
    faulty = 0
    for module in modules:
        weight = module.weight
        bias = exponent_bias(weight, fmt)
        codes = encode(weight, fmt, bias=bias).cpu().numpy()  # the fault model is numpy: same faults on any device
        stored = (weight != 0).cpu().numpy() if nonzero_only else np.ones(codes.shape, dtype=bool)
        new_stored, count = inject_code_faults(codes[stored], code_bits=fmt.total_bits, cell_bits=width,
                                               error_prob=error_prob, rng=rng)
        faulty += count
        if count:
            new = codes.copy()
            new[stored] = new_stored
            weight.copy_(decode(torch.from_numpy(new).to(weight.device), fmt, bias=bias, dtype=weight.dtype))
    return faulty

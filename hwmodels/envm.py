"""Embedded-memory cell library for the embedding store (hw-constants §4, edgebert.md §2.4).

Each cell carries 22nm array results at a few data capacities (NVMExplorer / NVSim).  For a
requested data capacity C (MiB) the array is interpolated between the valid points bracketing it:
    read energy per access, area, leakage:  log-log (power law) between neighbours
    read/write latency, write energy per bit:  linear in log C between neighbours
Outside the data range: read energy ~ C^0.5 (hw-constants §5.2), area and leakage ~ C, latencies
and per-bit write energy held at the nearest point.
Validity: a capacity is valid when the nearest listed point at or above it (or the largest point,
above the range) is valid.  FeFET SLC therefore becomes invalid above 1 MiB: NVMExplorer's 2 MB
FeFET arrays returned -1 for every output, and we assume larger ones fail too.
An access reads 64 cells = 64 * bits_per_cell data bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hwmodels import techdata

_COLUMNS = tuple(techdata.value("envm", "array_columns"))
_CELLS_DATA = techdata.load_data_file("envm")["cells"]
ENVM_CELLS: tuple[str, ...] = tuple(_CELLS_DATA.keys())
WORD_CELLS: int = int(techdata.value("accelerator", "envm_interface", "word_cells"))
MIB: float = 1024.0 * 1024.0


@dataclass(frozen=True)
class EnvmArrayPoint:
    """One published/reproduced array result (22nm, 64-cell access)."""

    data_capacity_mb: float
    area_mm2: float
    read_latency_ns: float
    read_energy_pj_per_access: float
    write_latency_ns: float
    write_energy_pj_per_bit: float
    leakage_mw: float
    valid: bool
    source: str


@dataclass(frozen=True)
class EnvmArray:
    """Array properties interpolated at the requested data capacities (numpy arrays)."""

    data_capacity_mb: np.ndarray
    area_mm2: np.ndarray
    read_latency_ns: np.ndarray
    read_energy_pj_per_access: np.ndarray
    read_energy_pj_per_bit: np.ndarray
    write_latency_ns: np.ndarray
    write_energy_pj_per_bit: np.ndarray
    leakage_mw: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class EnvmCell:
    """One cell technology: static properties plus its array data points."""

    name: str
    bits_per_cell: int
    volatile: bool
    endurance_cycles: float
    retention: str
    adjacent_level_error_prob: float
    adjacent_level_error_prob_range: tuple[float, float]
    points: tuple[EnvmArrayPoint, ...]

    @property
    def bits_per_access(self) -> int:
        """Data bits returned by one 64-cell access."""
        return WORD_CELLS * self.bits_per_cell

    @property
    def max_valid_capacity_mb(self) -> float:
        """Largest capacity the data supports as valid (inf when the largest point is valid)."""
        caps = [p.data_capacity_mb for p in self.points]
        if self.points[int(np.argmax(caps))].valid:
            return float("inf")
        return max((p.data_capacity_mb for p in self.points if p.valid), default=0.0)

    def array(self, data_capacity_mb: np.ndarray | float) -> EnvmArray:
        """Interpolate the array at ``data_capacity_mb`` (MiB of stored data)."""
        cap = np.atleast_1d(np.asarray(data_capacity_mb, dtype=float))
        if np.any(~(cap > 0.0)):
            raise ValueError(f"eNVM data capacity must be positive, got {data_capacity_mb}")
        all_caps = np.array([p.data_capacity_mb for p in self.points])
        all_valid = np.array([p.valid for p in self.points])
        order = np.argsort(all_caps)
        all_caps, all_valid = all_caps[order], all_valid[order]
        at_or_above = np.minimum(np.searchsorted(all_caps, cap, side="left"), len(all_caps) - 1)
        valid = all_valid[at_or_above]

        good = sorted((p for p in self.points if p.valid), key=lambda p: p.data_capacity_mb)
        c = np.array([p.data_capacity_mb for p in good])
        logc = np.log(c)
        x = np.log(cap)

        def loglog(values: list[float], outside_exponent: float) -> np.ndarray:
            logv = np.log(np.asarray(values))
            inside = np.exp(np.interp(x, logc, logv))
            below = values[0] * (cap / c[0]) ** outside_exponent
            above = values[-1] * (cap / c[-1]) ** outside_exponent
            return np.where(cap < c[0], below, np.where(cap > c[-1], above, inside))

        def lin_logc(values: list[float]) -> np.ndarray:
            return np.interp(x, logc, np.asarray(values))  # clamps at the ends

        read_pj = loglog([p.read_energy_pj_per_access for p in good], 0.5)
        return EnvmArray(
            data_capacity_mb=cap,
            area_mm2=loglog([p.area_mm2 for p in good], 1.0),
            read_latency_ns=lin_logc([p.read_latency_ns for p in good]),
            read_energy_pj_per_access=read_pj,
            read_energy_pj_per_bit=read_pj / self.bits_per_access,
            write_latency_ns=lin_logc([p.write_latency_ns for p in good]),
            write_energy_pj_per_bit=lin_logc([p.write_energy_pj_per_bit for p in good]),
            leakage_mw=loglog([p.leakage_mw for p in good], 1.0),
            valid=valid,
        )


def _parse_cell(name: str, raw: dict) -> EnvmCell:
    points = []
    for row in raw["arrays_22nm"]:
        record = dict(zip(_COLUMNS, row["value"]))
        points.append(EnvmArrayPoint(
            data_capacity_mb=float(record["data_capacity_mb"]), area_mm2=float(record["area_mm2"]),
            read_latency_ns=float(record["read_latency_ns"]),
            read_energy_pj_per_access=float(record["read_energy_pj_per_access"]),
            write_latency_ns=float(record["write_latency_ns"]),
            write_energy_pj_per_bit=float(record["write_energy_pj_per_bit"]),
            leakage_mw=float(record["leakage_mw"]), valid=bool(record["valid"]), source=row["source"]))
    low, high = raw["adjacent_level_error_prob_range"]["value"]
    return EnvmCell(
        name=name, bits_per_cell=int(raw["bits_per_cell"]["value"]), volatile=bool(raw["volatile"]["value"]),
        endurance_cycles=float(raw["endurance_cycles"]["value"]), retention=str(raw["retention"]["value"]),
        adjacent_level_error_prob=float(raw["adjacent_level_error_prob"]["value"]),
        adjacent_level_error_prob_range=(float(low), float(high)), points=tuple(points))


@lru_cache(maxsize=None)
def envm_cell(name: str) -> EnvmCell:
    """The cell called ``name`` (one of ``ENVM_CELLS``)."""
    if name not in _CELLS_DATA:
        raise ValueError(f"unknown eNVM cell {name!r}; expected one of {', '.join(ENVM_CELLS)}")
    return _parse_cell(name, _CELLS_DATA[name])


def envm_arrays(cell_index: np.ndarray, data_capacity_mb: np.ndarray) -> EnvmArray:
    """Vectorised ``envm_cell(ENVM_CELLS[i]).array(c)`` over paired index/capacity arrays."""
    idx = np.asarray(cell_index, dtype=int)
    cap = np.broadcast_to(np.asarray(data_capacity_mb, dtype=float), idx.shape)
    if np.any((idx < 0) | (idx >= len(ENVM_CELLS))):
        raise ValueError(f"eNVM cell index out of range 0..{len(ENVM_CELLS) - 1}")
    fields = {name: np.zeros(idx.shape) for name in EnvmArray.__dataclass_fields__}
    fields["valid"] = np.zeros(idx.shape, dtype=bool)
    for i in np.unique(idx):
        mask = idx == i
        arr = envm_cell(ENVM_CELLS[int(i)]).array(cap[mask])
        for name in fields:
            fields[name][mask] = getattr(arr, name)
    return EnvmArray(**fields)


def read_cost(cell: str, data_capacity_mb: float, n_reads: float) -> tuple[float, float]:
    """(energy_pj, time_ns) of ``n_reads`` 64-cell accesses to an array of that capacity."""
    arr = envm_cell(cell).array(data_capacity_mb)
    return float(n_reads * arr.read_energy_pj_per_access[0]), float(n_reads * arr.read_latency_ns[0])

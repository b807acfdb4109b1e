"""The cubic pruning schedule sized to a run, by hand."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dse.training.schedule import PruningSchedule


def test_cubic_schedule_hand_computed() -> None:
    sched = PruningSchedule()  # T = 100 -> W = 10, dense up to a = 10, target after T - b = 80
    keep = [sched.keep_fraction(t, total_steps=100, target_sparsity=0.5) for t in (0, 10, 45, 80, 81, 99)]
    # t = 45: 1 - (45 - 10) / (100 - 10 - 20) = 0.5 -> 0.5 + 0.5 * 0.5^3 = 0.5625
    # t = 80: 1 - 70 / 70 = 0 -> 0.5
    assert keep == pytest.approx([1.0, 1.0, 0.5625, 0.5, 0.5, 0.5])


def test_schedule_is_monotone_and_ends_at_target() -> None:
    sched = PruningSchedule(warmup_fraction=0.2, initial_warmup=0.5, final_warmup=1.0)
    keep = [sched.keep_fraction(t, total_steps=37, target_sparsity=0.8) for t in range(37)]
    assert all(a >= b for a, b in zip(keep, keep[1:]))
    assert keep[0] == 1.0 and keep[-1] == pytest.approx(0.2)


def test_schedule_needs_room_for_the_ramp() -> None:
    with pytest.raises(ValidationError, match="cubic ramp"):
        PruningSchedule(warmup_fraction=0.5, initial_warmup=1.0, final_warmup=1.0)
    with pytest.raises(ValidationError, match="extra"):
        PruningSchedule(warmup_steps=3)

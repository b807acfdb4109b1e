"""When to prune how much: EdgeBERT's cubic keep-fraction schedule, sized to a short fine-tune.

EdgeBERT counts its warm-up in absolute steps (``--warmup_steps 1000``, SST-2 with initial /
final warm-up 2 / 3 out of ~63k steps). Our fine-tunes are a few hundred steps, so the
warm-up unit is a fraction of the run instead (our choice): with ``W = warmup_fraction · T``
the model stays dense for the first ``initial_warmup · W`` steps (warm-up), the kept
fraction falls cubically, and the last ``final_warmup · W`` steps hold the target (cool-down)
so the network recovers under the final mask.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dse.compression.pruning import cubic_sparsity_schedule

__all__ = ["PruningSchedule"]


class PruningSchedule(BaseModel):
    """Cubic schedule settings; the defaults keep 10 % dense, ramp 70 %, hold the last 20 %."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_fraction: float = Field(default=0.1, ge=0.0, le=1.0, description="W as a fraction of all steps")
    initial_warmup: float = Field(default=1.0, ge=0.0, description="dense steps, in units of W")
    final_warmup: float = Field(default=2.0, ge=0.0, description="steps held at the target, in units of W")

    @model_validator(mode="after")
    def _check(self) -> "PruningSchedule":
        if self.warmup_fraction * (self.initial_warmup + self.final_warmup) >= 1.0:
            raise ValueError("warm-up plus cool-down must leave part of the run for the cubic ramp")
        return self

    def keep_fraction(self, step: int, *, total_steps: int, target_sparsity: float) -> float:
        """Fraction of weights kept at ``step`` (0-based) of ``total_steps``, ending at ``1 - target``."""
        return cubic_sparsity_schedule(
            step, total_steps=total_steps, warmup_steps=round(self.warmup_fraction * total_steps),
            initial_warmup=self.initial_warmup, final_warmup=self.final_warmup,
            initial_density=1.0, final_density=1.0 - target_sparsity,
        )

"""The training-time knobs of a trial (no torch here: the post-training spec imports it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TrainingSpec"]


class TrainingSpec(BaseModel):
    """The training-time knobs of a trial (``dse.config.KNOBS``); the defaults mean "no training"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pruning_method: Literal["none", "magnitude", "movement"] = "none"
    train_pruning: float = Field(default=0.0, ge=0.0, lt=1.0, description="encoder sparsity target")
    train_embedding_pruning: float = Field(default=0.0, ge=0.0, lt=1.0,
                                           description="word/position/type table sparsity target")
    span_init: float = Field(default=0.0, ge=0.0, description="adaptive span init (tokens); 0 = no adaptive span")
    distillation: bool = False
    train_epochs: float = Field(default=1.0, gt=0.0)

    @classmethod
    def from_knobs(cls, knobs: dict[str, Any]) -> "TrainingSpec":
        return cls(**{k: knobs[k] for k in cls.model_fields if k in knobs}).canonical()

    @property
    def is_noop(self) -> bool:
        """True when nothing is trained: the trial uses the prepared model itself."""
        return self.canonical() == TrainingSpec()

    def canonical(self) -> "TrainingSpec":
        """One spelling per distinct model: a method without a target (or the reverse) is no pruning."""
        values = self.model_dump()
        if self.pruning_method == "none" or self.train_pruning == 0.0:
            values.update(pruning_method="none", train_pruning=0.0)
        out = TrainingSpec(**values)
        if out.model_copy(update={"train_epochs": 1.0}) == TrainingSpec():
            return TrainingSpec()  # nothing to train: the epochs do not matter
        return out

"""What a trial's compression knobs mean: the post-training and the training-time specs.

:class:`CompressionSpec` holds the accuracy-relevant knobs (thresholds excluded) and keys the
logits cache (:meth:`CompressionSpec.as_dict`); :class:`TrainingSpec` holds the training-time
knobs, which choose the model the post-training compression starts from. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CompressionSpec", "TrainingSpec"]


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


@dataclass(frozen=True)
class CompressionSpec:
    """The accuracy-relevant compression knobs of a trial (thresholds excluded)."""

    encoder_pruning: float = 0.0  # fraction of each encoder matmul weight set to zero
    embedding_pruning: float = 0.0  # fraction of each embedding table set to zero
    weight_bits: int = 8
    weight_exp_bits: int = 3
    attention_span: int = 512  # tokens; >= the longest sentence means "no mask"
    weight_format: str = "paper2020"  # AdaptivFloat variant (dse.compression.adaptivfloat)
    # AdaptivFloat width of encoder linear inputs: the width the hardware model charges, so the
    # accuracy side simulates it by default too (0 = fp32: only for tools comparing against it)
    activation_bits: int = 8
    # Training-time knobs: which model the post-training compression above is applied to
    # (the prepared one when they are at their defaults; see dse.training).
    training: TrainingSpec = field(default_factory=TrainingSpec)

    @classmethod
    def from_knobs(cls, knobs: dict) -> "CompressionSpec":
        post = {f.name: knobs[f.name] for f in fields(cls) if f.name != "training"}
        return cls(**post, training=TrainingSpec.from_knobs(knobs))

    def as_dict(self) -> dict:
        """JSON-ready knob values; the training part only when it trains (keeps older cache keys)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "training"}
        if out["weight_format"] == _DEFAULTS["weight_format"]:  # added later: keep older cache keys
            del out["weight_format"]
        if not self.training.is_noop:
            out["training"] = self.training.canonical().model_dump(mode="json")
        return out


_DEFAULTS = {f.name: f.default for f in fields(CompressionSpec) if f.name != "training"}

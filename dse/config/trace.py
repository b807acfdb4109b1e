"""What ``dse trace`` is told: the validated options of a bring-your-own entropy trace.

A trace (CSV ``tokens,entropy_1..entropy_L``, one row per sentence) replaces the model run of a
study: its entropies give each sentence's exit layer under ``threshold``, and the hardware model
costs the sentences with the compression profile and accelerator below. The options come from a
profile file (YAML or JSON, :func:`load_trace_options`) and/or keyword options that override it.

The DVFS exit predictor is fitted on rows that are never scored: a seeded held-out part of the
trace (``fit_fraction`` of its rows, ``fit_seed``), or every row of a second trace (``fit_trace``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dse.config.study import _first_error, read_yaml_file
from dse.errors import ConfigError
from hwmodels import CompressionProfile, HardwareConfig

__all__ = ["DEFAULT_FIT_FRACTION", "TraceOptions", "load_trace_options"]

DEFAULT_FIT_FRACTION = 0.25  # a quarter of the trace fits the DVFS predictor, the rest is scored
# Fields given to hwmodels.CompressionProfile / HardwareConfig under the same names (they validate them).
COMPRESSION_FIELDS = ("encoder_density", "embedding_density", "weight_bits", "weight_exp_bits",
                      "activation_bits", "attention_span")
HARDWARE_FIELDS = ("vmac_lanes", "vector_size", "sram_kb", "envm_cell", "voltage_v", "latency_target_ms")
_PATH_FIELDS = ("model", "fit_trace")  # relative paths in a profile file are relative to the file


def _defaults(model: type[BaseModel], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: model.model_fields[name].default for name in names}


_COMPRESSION_DEFAULTS = _defaults(CompressionProfile, COMPRESSION_FIELDS)
_HARDWARE_DEFAULTS = _defaults(HardwareConfig, HARDWARE_FIELDS)


class TraceOptions(BaseModel):
    """Everything that turns an entropy trace into cost figures (every field acts on the result)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float | tuple[float, ...] = Field(
        description="entropy exit threshold in nats: one for every layer, or one per layer")
    model: str = Field("all-MiniLM-L6-v2", min_length=1,
                       description="whose shape to cost: packaged default, hub name, folder, or a config.json file")
    num_labels: int = Field(2, ge=1, le=1000, description="classes of the off-ramp classifiers")
    offramp_head: Literal["pooler", "linear"] = Field("pooler", description="off-ramp head the trace came from")
    offramp_pooling: Literal["cls", "mean"] = Field("cls", description="off-ramp input the trace came from")
    # compression profile (hwmodels.CompressionProfile): pruning densities, AdaptivFloat formats, span
    encoder_density: float = Field(_COMPRESSION_DEFAULTS["encoder_density"],
                                   description="non-zero fraction of encoder matmul weights")
    embedding_density: float = Field(_COMPRESSION_DEFAULTS["embedding_density"],
                                     description="non-zero fraction of embedding entries")
    weight_bits: int = Field(_COMPRESSION_DEFAULTS["weight_bits"], description="AdaptivFloat bits of the weights")
    weight_exp_bits: int = Field(_COMPRESSION_DEFAULTS["weight_exp_bits"],
                                 description="AdaptivFloat exponent bits of the weights")
    activation_bits: int = Field(_COMPRESSION_DEFAULTS["activation_bits"], description="datapath activation bits")
    attention_span: int | None = Field(_COMPRESSION_DEFAULTS["attention_span"],
                                       description="hard span: largest query-key distance attended; null = full")
    # accelerator (hwmodels.HardwareConfig)
    vmac_lanes: int = Field(_HARDWARE_DEFAULTS["vmac_lanes"], description="vector-MAC lanes")
    vector_size: int = Field(_HARDWARE_DEFAULTS["vector_size"], description="MACs per lane per cycle")
    sram_kb: float = Field(_HARDWARE_DEFAULTS["sram_kb"], description="on-chip SRAM buffer (KiB)")
    envm_cell: str = Field(_HARDWARE_DEFAULTS["envm_cell"], description="eNVM cell of the embeddings")
    voltage_v: float = Field(_HARDWARE_DEFAULTS["voltage_v"], description="supply voltage (with DVFS: layer 1's)")
    latency_target_ms: float | None = Field(None, description="per-sentence target; set: DVFS on, aiming for it")
    # where the DVFS exit predictor is fitted (never on the rows that are scored)
    fit_fraction: float = Field(DEFAULT_FIT_FRACTION, gt=0.0, lt=1.0,
                                description="held-out fraction of the trace that fits the DVFS predictor")
    fit_seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the held-out rows")
    fit_trace: Path | None = Field(None, description="a second trace that fits the predictor (all rows scored)")

    @field_validator("threshold")
    @classmethod
    def _thresholds(cls, value: float | tuple[float, ...]) -> float | tuple[float, ...]:
        values = value if isinstance(value, tuple) else (value,)
        if not values:
            raise ValueError("give one threshold, or one per layer")
        for t in values:
            if not math.isfinite(t) or t < 0:
                raise ValueError(f"thresholds must be finite and >= 0 nats, got {t}")
        return value

    @model_validator(mode="after")
    def _costable(self) -> "TraceOptions":
        # the hardware model's own checks, reported under this model's field names
        for build in (self.compression, self.hardware):
            try:
                build()
            except ValidationError as exc:
                raise ValueError(_first_error(exc)) from None
        chosen = self.model_fields_set
        if self.fit_trace is not None and chosen & {"fit_fraction", "fit_seed"}:
            raise ValueError("fit_trace fits the DVFS predictor on another trace, so fit_fraction and "
                             "fit_seed would do nothing; give one or the other")
        return self

    def compression(self) -> CompressionProfile:
        return CompressionProfile(**{name: getattr(self, name) for name in COMPRESSION_FIELDS})

    def hardware(self) -> HardwareConfig:
        return HardwareConfig(**{name: getattr(self, name) for name in HARDWARE_FIELDS},
                              dvfs=self.latency_target_ms is not None)

    @property
    def dvfs(self) -> bool:
        return self.latency_target_ms is not None


def load_trace_options(profile: str | Path | None = None, **options: Any) -> TraceOptions:
    """Validate trace options: the profile file's (YAML or JSON mapping), then ``options`` on top
    (``None`` values are not given). Every problem is one ``ConfigError`` line, naming the profile
    file when a value came from it."""
    from_file: dict[str, Any] = {}
    if profile is not None:
        profile = Path(profile)
        if profile.is_dir():
            raise ConfigError(f"{profile} is a folder; give the trace profile file (YAML or JSON)")
        data = read_yaml_file(profile, what="a trace profile")
        if not isinstance(data, dict):
            raise ConfigError(f"{profile}: a trace profile must be a YAML or JSON mapping")
        from_file = dict(data)
        for key in _PATH_FIELDS:  # next to the profile, so that a profile works from any folder
            value = from_file.get(key)
            if isinstance(value, str) and value:
                beside = profile.parent / Path(value).expanduser()
                # a model may also be a hub name or the packaged default: only paths found there move
                if key == "fit_trace" or beside.exists():
                    from_file[key] = str(beside)
    given = {k: v for k, v in options.items() if v is not None}
    # an option that picks the other source of the DVFS fit replaces the profile's choice
    if "fit_trace" in given:
        from_file = {k: v for k, v in from_file.items() if k not in ("fit_fraction", "fit_seed")}
    if given.keys() & {"fit_fraction", "fit_seed"}:
        from_file.pop("fit_trace", None)
    try:
        return TraceOptions.model_validate({**from_file, **given})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = first["loc"]
        if first["type"] == "missing":
            raise ConfigError(f"no {where[0]}: give it (e.g. --{str(where[0]).replace('_', '-')}) or put it "
                              "in the profile file") from None
        from_profile = profile is not None and (not where or str(where[0]) not in given)
        raise ConfigError(f"{profile}: {_first_error(exc)}" if from_profile else _first_error(exc)) from None

"""The options of ``dse trace``: a profile file (YAML or JSON) and keyword options on top,
validated (extra keys refused, hardware-model ranges), every problem one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from dse.config.trace import DEFAULT_FIT_FRACTION, TraceOptions, load_trace_options
from dse.errors import ConfigError


def test_defaults_and_what_the_hardware_model_is_told() -> None:
    options = load_trace_options(threshold=0.2)
    assert options.fit_fraction == DEFAULT_FIT_FRACTION and options.fit_seed == 0 and options.fit_trace is None
    assert not options.dvfs and not options.hardware().dvfs
    options = load_trace_options(threshold=[0.1, 0.2], encoder_density=0.4, embedding_density=0.5, weight_bits=6,
                                 weight_exp_bits=2, activation_bits=6, attention_span=32, vmac_lanes=8,
                                 vector_size=4, sram_kb=128, envm_cell="pcm", voltage_v=0.7,
                                 latency_target_ms=3.0)
    assert options.threshold == (0.1, 0.2)
    assert options.compression().model_dump() == {
        "encoder_density": 0.4, "embedding_density": 0.5, "weight_bits": 6, "weight_exp_bits": 2,
        "activation_bits": 6, "attention_span": 32}
    hw = options.hardware()
    assert (hw.vmac_lanes, hw.vector_size, hw.sram_kb, hw.envm_cell, hw.voltage_v, hw.dvfs, hw.latency_target_ms) == \
        (8, 4, 128.0, "pcm", 0.7, True, 3.0)


def test_profile_paths_are_next_to_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "shape.json").write_text("{}")
    profile = folder / "p.yaml"
    profile.write_text("threshold: 0.2\nmodel: shape.json\nfit_trace: fit.csv\n")
    monkeypatch.chdir(tmp_path)
    options = load_trace_options(profile)
    assert options.model == str(folder / "shape.json") and options.fit_trace == folder / "fit.csv"
    profile.write_text("threshold: 0.2\nmodel: all-MiniLM-L6-v2\n")  # a name, not a file there: kept
    assert load_trace_options(profile).model == "all-MiniLM-L6-v2"


def test_options_override_the_profile(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("threshold: 0.2\nvmac_lanes: 8\nfit_fraction: 0.5\nfit_seed: 3\n")
    assert load_trace_options(profile).vmac_lanes == 8
    assert load_trace_options(profile, vmac_lanes=32, threshold=None).vmac_lanes == 32  # None: not given
    # an option naming the other source of the DVFS fit replaces the profile's
    swapped = load_trace_options(profile, fit_trace="other.csv")
    assert swapped.fit_trace == Path("other.csv") and swapped.fit_fraction == DEFAULT_FIT_FRACTION
    profile.write_text("threshold: 0.2\nfit_trace: fit.csv\n")
    assert load_trace_options(profile, fit_fraction=0.4).fit_trace is None


@pytest.mark.parametrize(("profile", "options", "message"), [
    (None, {}, "no threshold: give it"),
    (None, {"threshold": -0.1}, "threshold: thresholds must be finite and >= 0 nats, got -0.1"),
    (None, {"threshold": float("nan")}, "thresholds must be finite"),
    (None, {"threshold": []}, "give one threshold, or one per layer"),
    (None, {"threshold": 0.2, "fit_fraction": 0.0}, "fit_fraction: Input should be greater than 0"),
    (None, {"threshold": 0.2, "fit_fraction": 1.0}, "fit_fraction: Input should be less than 1"),
    (None, {"threshold": 0.2, "fit_fraction": -0.5}, "fit_fraction: Input should be greater than 0"),
    (None, {"threshold": 0.2, "fit_seed": -1}, "fit_seed: Input should be greater than or equal to 0"),
    (None, {"threshold": 0.2, "envm_cell": "dram"}, "envm_cell: unknown eNVM cell 'dram'; expected one of"),
    (None, {"threshold": 0.2, "encoder_density": 0.0}, "encoder_density: Input should be greater than 0"),
    (None, {"threshold": 0.2, "weight_bits": 4, "weight_exp_bits": 4}, "weight_exp_bits (4) must be < weight_bits (4)"),
    (None, {"threshold": 0.2, "activation_bits": 2}, "activation_bits: Input should be greater than or equal to 4"),
    (None, {"threshold": 0.2, "vector_size": 0}, "vector_size: Input should be greater than or equal to 1"),
    (None, {"threshold": 0.2, "voltage_v": 0.9}, "voltage must be within 0.50..0.80 V"),
    (None, {"threshold": 0.2, "latency_target_ms": 0.0}, "latency_target_ms: Input should be greater than 0"),
    (None, {"threshold": 0.2, "num_labels": 0}, "num_labels: Input should be greater than or equal to 1"),
    (None, {"threshold": 0.2, "fit_trace": "x.csv", "fit_seed": 2}, "fit_fraction and fit_seed would do nothing"),
    ("threshold: 0.2\ncolour: red\n", {}, "p.yaml: colour: unknown key"),
    ("threshold: 0.2\nsram_kb: lots\n", {}, "p.yaml: sram_kb: Input should be a valid number"),
    ("- 0.2\n", {}, "p.yaml: a trace profile must be a YAML or JSON mapping"),
    ("threshold: [unclosed\n", {}, "p.yaml: YAML syntax error"),
    ("threshold: 0.2\nthreshold: 0.3\n", {}, "duplicate key 'threshold'"),
    ("threshold: 0.2\nfit_fraction: 1.5\n", {}, "p.yaml: fit_fraction: Input should be less than 1"),
    ("threshold: 0.2\nfit_fraction: 1.5\n", {"fit_fraction": 0.5}, None),  # the option replaces the bad value
    ("threshold: 0.2\n", {"fit_fraction": 1.5}, "fit_fraction: Input should be less than 1"),
])
def test_bad_options_are_one_line(tmp_path: Path, profile: str | None, options: dict, message: str | None) -> None:
    path = None
    if profile is not None:
        path = tmp_path / "p.yaml"
        path.write_text(profile)
    if message is None:
        assert isinstance(load_trace_options(path, **options), TraceOptions)
        return
    with pytest.raises(ConfigError) as caught:
        load_trace_options(path, **options)
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert text.startswith(f"{path}: ") == (profile is not None and not options or "p.yaml" in message)


def test_profile_files_that_are_not_profiles(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_trace_options(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a folder; give the trace profile file"):
        load_trace_options(tmp_path)
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ConfigError, match=r"b.yaml: cannot read \(UnicodeDecodeError\)"):
        load_trace_options(binary)

"""Study plots from synthetic trial tables: both formats written, valid and not blank."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from dse.analysis.plots import (plot_design_sentences, plot_energy_breakdown, plot_hypervolume_history,
                       plot_knobs_parallel, plot_pareto, write_study_plots)
from dse.analysis.results import StudyAnalysis, hypervolume, hypervolume_history, pareto_table, study_reference
from dse.config import parse_study_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPACE = {"exit_threshold": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.1},
         "vmac_lanes": {"type": "categorical", "choices": [8, 16, 32]},
         "envm_cell": {"type": "categorical", "choices": ["rram_slc", "pcm"]},
         "dvfs": {"type": "categorical", "choices": [False, True]}}


def _config(objectives: list[str]):  # noqa: ANN202
    return parse_study_config({"name": "synthetic", "search_space": SPACE,
                               "objectives": [{"name": n} for n in objectives]}, source="test")


def _trials(n: int = 24, *, breakdown: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    accuracy = rng.uniform(70, 88, n)
    energy = 300 + 40 * (accuracy - 70) + rng.uniform(0, 200, n)  # accuracy costs energy
    table = pd.DataFrame({
        "trial": np.arange(n), "state": ["COMPLETE"] * (n - 1) + ["FAIL"], "feasible": accuracy > 76,
        "accuracy": accuracy, "energy_uj": energy, "latency_ms": rng.uniform(0.5, 3.0, n),
        "knob.exit_threshold": rng.choice([0.0, 0.2, 0.4, 0.6], n), "knob.vmac_lanes": rng.choice([8, 16, 32], n),
        "knob.envm_cell": rng.choice(["rram_slc", "pcm"], n), "knob.dvfs": rng.choice([False, True], n),
    })
    if breakdown:
        for key, share in {"mac": 0.05, "sram": 0.1, "envm": 0.01, "dram": 0.6, "leakage": 0.04,
                           "sfu": 0.001, "overhead": 0.199}.items():
            table[f"energy.{key}_uj"] = share * energy
    return table


def _check(paths: list[Path], *, texts: tuple[str, ...] = ()) -> None:
    """Both files exist; the PNG decodes to a non-blank image, the SVG parses and holds the labels."""
    assert [p.suffix for p in paths] == [".png", ".svg"]
    png, svg = paths
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    image = mpimg.imread(png)[..., :3]
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert (image.std(axis=2) > 0.1).mean() > 0.002  # coloured marks (points, bars, lines), not just text
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = svg.read_text(encoding="utf-8")
    for needle in texts:
        assert needle in text, needle


@pytest.mark.parametrize("objectives", [["accuracy", "energy_uj"], ["accuracy", "energy_uj", "latency_ms"]],
                         ids=["scatter-2", "pairgrid-3"])
def test_pareto_plot(objectives: list[str], tmp_path: Path) -> None:
    config = _config(objectives)
    paths = plot_pareto(_trials(), config, tmp_path / "pareto.png", hypervolume=123.0,
                        reference_source="data-derived reference")
    _check(paths, texts=("energy per sentence (µJ)", "accuracy (points)", "hypervolume 123"))
    if len(objectives) == 3:
        assert "mean latency per sentence (ms)" in paths[1].read_text(encoding="utf-8")


def test_hypervolume_history_plot(tmp_path: Path) -> None:
    config = _config(["accuracy", "energy_uj"])
    trials = _trials()
    ref, source = study_reference(trials, config)
    history = hypervolume_history(trials, config, ref)
    assert history["hypervolume"].is_monotonic_increasing and history["hypervolume"].iloc[-1] > 0
    paths = plot_hypervolume_history(history, config, tmp_path / "hv.png", reference=ref, reference_source=source)
    _check(paths, texts=("trial number", "hypervolume (points × µJ)", "derived from the data"))


def test_energy_breakdown_plot_and_old_studies_without_it(tmp_path: Path) -> None:
    config = _config(["accuracy", "energy_uj"])
    front = pareto_table(_trials(), config)
    assert len(front) >= 2
    _check(plot_energy_breakdown(front, config, tmp_path / "energy.png"),
           texts=("DRAM", "MAC (compute)", "eNVM (embeddings)", "energy per sentence (µJ)"))
    old = pareto_table(_trials(breakdown=False), config)
    assert plot_energy_breakdown(old, config, tmp_path / "old.png") == []  # nothing recorded: no plot


def test_knobs_parallel_plot(tmp_path: Path) -> None:
    config = _config(["accuracy", "energy_uj"])
    front = pareto_table(_trials(), config)
    _check(plot_knobs_parallel(front, config, tmp_path / "knobs.png"),
           texts=("exit threshold (nats)", "VMAC lanes", "eNVM cell", "rram_slc", "accuracy (points)"))


def test_design_sentences_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    exits = rng.integers(1, 7, 300)
    latency = 0.2 * exits + rng.uniform(0, 0.3, 300)
    paths = plot_design_sentences(exits, latency, tmp_path / "design.png", num_layers=6, title="trial 3 (knee)",
                                  sentence_target_ms=1.0, mean_bound_ms=1.2)
    met = round(100 * float(np.mean(latency <= 1.0)))
    _check(paths, texts=("exit layer", "latency per sentence (ms)", f"({met}% meet it)",
                         "mean-latency constraint 1.2 ms"))


def test_write_study_plots_writes_every_study_plot(tmp_path: Path) -> None:
    config = _config(["accuracy", "energy_uj", "latency_ms"])
    trials = _trials()
    front = pareto_table(trials, config)
    ref, source = study_reference(trials, config)
    names = config.objective_names()
    analysis = StudyAnalysis(config=config, trials=trials, front=front, reference=ref, reference_source=source,
                             hypervolume=hypervolume(front[names].to_numpy(), config.directions(), ref),
                             history=hypervolume_history(trials, config, ref), baseline_points=86.0)
    plots = write_study_plots(analysis, tmp_path / "plots")
    assert set(plots) == {"pareto", "hypervolume", "energy_breakdown", "knobs"}
    for paths in plots.values():
        _check(paths)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(
        f"{n}.{ext}" for n in plots for ext in ("png", "svg"))  # no temporary files left behind

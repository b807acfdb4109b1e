"""A study's output files and its status summary, rebuilt from the storage at any time.

:func:`write_study_outputs` writes ``trials.csv``, ``pareto.csv``, ``hypervolume.csv`` (each
atomically) and every study-level plot into ``plots/``; :func:`study_status` is what
``dse study status`` shows. Both only read the storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from dse.analysis.plots import write_study_plots
from dse.analysis.results import StudyAnalysis, analyse_study
from dse.config import StudyConfig
from dse.errors import DSEError
from dse.io import atomic_write, check_writable
from dse.study.engine import StudyFolder, count_complete

__all__ = ["TABLE_FILES", "StudyOutputs", "study_status", "write_study_outputs"]

TABLE_FILES = {"trials": "trials.csv", "pareto": "pareto.csv", "hypervolume": "hypervolume.csv"}


@dataclass(frozen=True)
class StudyOutputs:
    """What :func:`write_study_outputs` wrote, and the analysis it wrote it from."""

    analysis: StudyAnalysis
    tables: dict[str, Path]  # "trials", "pareto", "hypervolume" -> CSV file
    plots: dict[str, list[Path]]  # plot name -> [png, svg] (absent when not drawable)

    @property
    def files(self) -> list[Path]:
        """Every file written: the tables, then the plots."""
        return [*self.tables.values(), *(p for paths in self.plots.values() for p in paths)]


def write_study_outputs(analysis: StudyAnalysis, folder: StudyFolder) -> StudyOutputs:
    """trials.csv, pareto.csv, hypervolume.csv and every study-level plot, from ``analysis``."""
    for where in (folder.path, folder.plots):  # one line before anything is written, not a traceback
        try:
            check_writable(where)
        except OSError as exc:
            raise DSEError(f"cannot write the study outputs into {where}: {exc.strerror}") from None
    tables = {}
    for name, table in (("trials", analysis.trials), ("pareto", analysis.front), ("hypervolume", analysis.history)):
        path = folder.path / TABLE_FILES[name]
        with atomic_write(path, "w", newline="") as fh:
            table.to_csv(fh, index=False)
        tables[name] = path
    return StudyOutputs(analysis, tables, write_study_plots(analysis, folder.plots))


def study_status(study: optuna.Study, config: StudyConfig) -> dict[str, Any]:
    """Trial counts by state, the Pareto size, the baselines and the hypervolume (JSON-ready)."""
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    analysis = analyse_study(study, config)
    reference = (None if analysis.reference is None
                 else dict(zip(config.objective_names(), map(float, analysis.reference))))
    return {"study": config.name, "target_trials": study.user_attrs.get("target_trials", config.n_trials),
            "completed": count_complete(study),
            "states": states, "pareto_size": len(analysis.front),
            "baseline_points": study.user_attrs.get("baseline_points"),
            **{k: study.user_attrs[k] for k in ("baseline_points_by_task", "approximations") if k in study.user_attrs},
            "hypervolume": analysis.hypervolume, "hypervolume_reference": reference,
            "hypervolume_reference_source": analysis.reference_source}

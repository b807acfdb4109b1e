"""One self-contained HTML report of a study: definition, summary, Pareto table, plots, picks.

Images are inlined as base64 PNG and the styles are inline, so the file opens anywhere
without a network or the results folder beside it.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from dse.analysis.plots import KNOB_LABELS, LABELS, plot_design_sentences, write_study_plots
from dse.analysis.results import StudyAnalysis, analyse_study, check_pick, pick_label, pick_trial
from dse.config import StudyConfig
from dse.errors import DSEError
from dse.io import check_writable, write_text_atomic
from dse.study.engine import StudyFolder, open_study

__all__ = ["DesignSentencesPlot", "design_sentences_plot", "render_report", "write_report"]

PICK_TITLES = {
    "knee": "knee",
    "max-accuracy": "best accuracy",
    "min-energy": "minimum energy",
    "max-hv-contribution": "largest hypervolume contribution",
}
PLOT_CAPTIONS = {
    "pareto": "Every completed trial (feasible, infeasible, Pareto) and the feasible front.",
    "hypervolume": "Hypervolume of the feasible front after each completed trial.",
    "energy_breakdown": "Energy per sentence of each Pareto design, by component.",
    "knobs": "Knobs of the Pareto designs; each axis spans the searched range.",
}
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th{background:#f3f3f3}
td.text,th.text{text-align:left}
figure{margin:1rem 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}pre{background:#f7f7f7;padding:.75rem;overflow-x:auto;font-size:.8rem}
.note{color:#8a5a00}.scroll{overflow-x:auto}
"""


@dataclass(frozen=True)
class DesignSentencesPlot:
    """The per-sentence plot of one design (paths), or why it could not be drawn (note)."""

    pick: str
    trial: int | None
    paths: list[Path]
    note: str


def _pick_title(pick: str) -> str:
    if pick.startswith("best:"):
        metric = pick.removeprefix("best:")
        return f"best {LABELS.get(metric, metric).split(' (')[0]}"
    return PICK_TITLES.get(pick, pick)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)


def _cell(value: Any, tag: str = "td") -> str:
    text_like = isinstance(value, str) and not value.replace(".", "", 1).isdigit()
    cls = ' class="text"' if text_like else ""
    return f"<{tag}{cls}>{html.escape(_fmt(value))}</{tag}>"


def _table(table_id: str, header: list[str], rows: Iterable[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _image(path: Path, alt: str, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _metric_columns(front: pd.DataFrame, config: StudyConfig) -> list[str]:
    names = config.objective_names()
    extra = [c for c in LABELS if c in front.columns and c not in names]
    return names + extra


def design_sentences_plot(folder: StudyFolder, study: optuna.Study, analysis: StudyAnalysis, pick: str,
                          plots_dir: Path) -> DesignSentencesPlot:
    """Exit-layer histogram and per-sentence latency of a picked design, from the logits cache.

    Loads the study's fine-tuned model (from ``$DSE_CACHE_DIR``) and re-scores the design; its
    per-layer logits come from ``cache/logits/``, so a design the study scored runs no model.
    When the model or data is not available the result carries a note instead.
    """
    from dse.evaluation import build_context, sentence_results  # torch: only when drawing this

    config = analysis.config
    if analysis.front.empty:
        return DesignSentencesPlot(pick, None, [], "no feasible design to show")
    number = pick_trial(analysis.front, config, pick, reference=analysis.reference)
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    prepared_key = study.user_attrs.get("prepared_key")
    if not prepared_key:  # e.g. trials recorded by other means: there is no model to re-derive from
        return DesignSentencesPlot(pick, number, [], "per-sentence plots need the study's fine-tuned "
                                   "model, and this study records none")
    try:
        ctx = build_context(config, cache_dir=folder.cache,
                            baseline_points=analysis.baseline_points_by_task or analysis.baseline_points)
        if ctx.prepared_key != prepared_key:
            return DesignSentencesPlot(pick, number, [], "per-sentence plots unavailable: the fine-tuned "
                                       "model here is not the one the study used")
        knobs = config.knob_values(trial.user_attrs.get("knobs", trial.params))
        sentences = sentence_results(ctx, knobs)  # from cache/logits/ when the study cached them
    except (DSEError, ValueError) as exc:  # data or model not available here, invalid design
        return DesignSentencesPlot(pick, number, [], f"per-sentence plots unavailable: {exc}")
    recorded = (trial.user_attrs.get("metrics") or {}).get("latency_ms")
    # the per-sentence target means something when DVFS aims for it or the study sets it
    target_set = bool(knobs.get("dvfs")) or "latency_target_ms" in {*config.fixed, *config.search_space}
    title = (f"{config.name}: trial {number} ({_pick_title(pick)}), "
             f"{len(sentences.latency_ms)} dev sentences")
    paths = plot_design_sentences(
        sentences.exit_layers, sentences.latency_ms, plots_dir / f"design-{pick_label(pick)}.png",
        num_layers=ctx.shape.num_layers, title=title,
        sentence_target_ms=float(knobs["latency_target_ms"]) if target_set else None,
        mean_bound_ms=config.constraints.latency_target_ms,
    )
    note = f"re-derived mean latency {np.mean(sentences.latency_ms):.4g} ms"
    if recorded is not None:
        note += f" (recorded on the trial: {recorded:.4g} ms)"
    return DesignSentencesPlot(pick, number, paths, note)


def render_report(analysis: StudyAnalysis, *, definition_yaml: str, plots: dict[str, list[Path]],
                  design_plot: DesignSentencesPlot | None = None) -> str:
    """The HTML text of the report (plots given as written files; their PNGs are inlined)."""
    config, front, trials = analysis.config, analysis.front, analysis.trials
    names = config.objective_names()
    title = f"edgebert-dse report: {config.name}"
    states = trials["state"].value_counts().to_dict() if not trials.empty else {}
    complete = trials[trials["state"] == "COMPLETE"] if not trials.empty else trials
    n_feasible = int(complete["feasible"].astype(bool).sum()) if not complete.empty else 0
    reference = "–"
    if analysis.reference is not None:
        reference = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, analysis.reference))
    objectives = ", ".join(f"{o.name} ({o.direction})" for o in config.objectives)
    constraints = ", ".join(f"{k} {v:g}" for k, v in config.constraints.model_dump().items() if v is not None)
    summary = [
        ["study", config.name],
        ["tasks (share of sentences)", ", ".join(f"{t.name} ({t.mix:.0%})" for t in config.task_settings())]
        if config.is_multitask else ["task", config.task],
        ["model", config.model.name],
        ["objectives", objectives], ["constraints", constraints or "none"],
        ["trials", ", ".join(f"{k.lower()} {v}" for k, v in sorted(states.items())) or "none"],
        ["feasible completed trials", n_feasible], ["Pareto designs", len(front)],
        ["baseline (uncompressed, no exit)",
         ", ".join(f"{t} {p:.2f}" for t, p in analysis.baseline_points_by_task.items()) + " points"
         if analysis.baseline_points_by_task else
         f"{analysis.baseline_points:.2f} points" if analysis.baseline_points is not None else "–"],
        *[["approximation", note] for note in analysis.approximations.values()],
        ["hypervolume", analysis.hypervolume],
        ["hypervolume reference", f"{reference} ({analysis.reference_source})"],
    ]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>",
             "<h2>Summary</h2>",
             _table("summary", ["item", "value"], summary).replace("<td>", '<td class="text">')]

    parts.append("<h2>Pareto designs (feasible)</h2>")
    if front.empty:
        parts.append('<p class="note">no feasible completed trial yet</p>')
    else:
        metrics = _metric_columns(front, config)
        knobs = [c for c in front.columns if c.startswith("knob.") and c.removeprefix("knob.") in config.search_space]
        header = ["trial", *[LABELS.get(m, m) for m in metrics]]
        header += ["HV contribution"] if "hv_contribution" in front.columns else []
        header += [KNOB_LABELS.get(k.removeprefix("knob."), k.removeprefix("knob.")) for k in knobs]
        rows = []
        for _, row in front.iterrows():
            cells = [int(row["trial"]), *[row[m] for m in metrics]]
            cells += [row["hv_contribution"]] if "hv_contribution" in front.columns else []
            rows.append(cells + [row[k] for k in knobs])
        parts.append(_table("pareto", header, rows))

    parts.append("<h2>Chosen designs</h2>")
    picks = analysis.picks()
    if not picks:
        parts.append('<p class="note">no feasible completed trial to choose from</p>')
    else:
        by_trial = front.set_index("trial")
        fields = [*_metric_columns(front, config)]
        fields += [c for c in front.columns if c.startswith("knob.")]
        header = ["", *[f"{_pick_title(p)} (trial {t})" for p, t in picks.items()]]
        rows = [[LABELS.get(f, KNOB_LABELS.get(f.removeprefix("knob."), f.removeprefix("knob.")))]
                + [by_trial.loc[t, f] for t in picks.values()] for f in fields]
        parts.append(_table("picks", header, rows))

    parts.append("<h2>Plots</h2>")
    for name, paths in plots.items():
        png = next((p for p in paths if p.suffix == ".png"), None)
        if png is not None:
            parts.append(_image(png, name, PLOT_CAPTIONS.get(name, name)))
    if design_plot is not None:
        which = f"{_pick_title(design_plot.pick)}"
        which += f" (trial {design_plot.trial})" if design_plot.trial is not None else ""
        parts.append(f"<h2>Exit layers and per-sentence latency: {html.escape(which)}</h2>")
        if design_plot.paths:
            png = next(p for p in design_plot.paths if p.suffix == ".png")
            parts.append(_image(png, f"design-{design_plot.pick}",
                                f"Exit layer of every dev sentence and its latency; {design_plot.note}."))
        else:
            parts.append(f'<p class="note">{html.escape(design_plot.note)}</p>')

    parts.append("<h2>Study definition</h2>")
    parts.append(f"<pre>{html.escape(definition_yaml)}</pre>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_report(folder: StudyFolder, output: Path | None = None, *, design: str = "knee") -> Path:
    """Rebuild the study's plots and write the HTML report (default ``<folder>/report.html``).

    ``design``: the pick whose exit layers and per-sentence latencies the report shows.
    """
    check_pick(design)  # fail before any work
    config = folder.load_config()
    for where in ((output.parent if output else folder.path), folder.plots):
        try:
            check_writable(where)
        except OSError as exc:
            raise DSEError(f"cannot write the report into {where}: {exc.strerror}") from None
    study = open_study(folder, config, create=False)
    analysis = analyse_study(study, config)
    plots = write_study_plots(analysis, folder.plots)
    design_plot = design_sentences_plot(folder, study, analysis, design, folder.plots)
    text = render_report(analysis, definition_yaml=folder.config.read_text(encoding="utf-8"),
                         plots=plots, design_plot=design_plot)
    path = output or folder.path / "report.html"
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise DSEError(f"cannot write the report {path}: {exc.strerror}") from None
    return path

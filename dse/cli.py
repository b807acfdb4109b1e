"""The ``dse`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from dse.errors import DSEError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Algorithm/hardware co-design studies for BERT-family models on edge accelerators.")
study_app = typer.Typer(no_args_is_help=True, help="Run, resume and inspect studies.")
config_app = typer.Typer(no_args_is_help=True, help="Study definitions.")
app.add_typer(study_app, name="study")
app.add_typer(config_app, name="config")
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)



class ExecutorKind(str, Enum):
    inline = "inline"
    ray = "ray"


def _check_pick(value: Optional[str]) -> Optional[str]:
    """Reject an unknown --pick while parsing (one ``error:`` line)."""
    if value is not None:
        from dse.results import check_pick

        check_pick(value)
    return value


Pick = typer.Option("--pick", callback=_check_pick,
                    help="knee, max-accuracy, min-energy, max-hv-contribution or best:<metric> "
                         "(e.g. best:latency_ms); chosen among the feasible Pareto designs")


class Format(str, Enum):
    table = "table"
    json = "json"


Executor = typer.Option("--executor", help="inline or ray (default: the study definition's)")
MaxInFlight = typer.Option("--max-in-flight", min=1, help="trials evaluated at once (default: executor.max_in_flight)")


def _interactive() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")


def _progress_printer():  # noqa: ANN202
    """A one-line rich status when interactive; silent otherwise."""
    if not _interactive():
        return None, None
    from dse.results import feasible, pareto_mask

    status = console.status("starting…")
    status.start()

    def update(study, stats, target) -> None:  # noqa: ANN001
        done = [t for t in study.trials if t.state.name == "COMPLETE" and feasible(t)]
        front = 0
        if done:
            import numpy as np

            front = int(pareto_mask(np.array([t.values for t in done]),
                                    [d.name.lower() for d in study.directions]).sum())
        rate = stats.completed / max(time.perf_counter() - stats.started, 1e-9) * 60
        status.update(f"completed {stats.completed}/{target} · failed {stats.failed} · "
                      f"cache hits {stats.cache_hits} · Pareto {front} · {rate:.1f} trials/min")

    return update, status


def _run(folder, config, *, n_trials, executor, ray_address, max_in_flight=None) -> None:  # noqa: ANN001
    from dse.study.engine import run_study

    start = time.perf_counter()
    update, status = _progress_printer()
    try:
        stats = run_study(folder, config, n_trials=n_trials, executor_kind=executor,
                          ray_address=ray_address, max_in_flight=max_in_flight, progress=update)
    finally:
        if status is not None:
            status.stop()
    console.print(f"{stats.completed} trials complete ({stats.failed} failed this run, "
                  f"{stats.cache_hits} cache hits, {stats.derived} derived designs from the cheap-knob sweep) "
                  f"in {time.perf_counter() - start:.0f} s")
    _write_outputs(folder, config, show=True)


def _write_outputs(folder, config, *, show: bool) -> None:  # noqa: ANN001
    """trials.csv, pareto.csv, hypervolume.csv and every study-level plot, rebuilt from the storage."""
    from dse.plots import write_study_plots
    from dse.results import analyse_study
    from dse.study.engine import open_study

    study = open_study(folder, config, create=False)
    analysis = analyse_study(study, config)
    for name, table in (("trials", analysis.trials), ("pareto", analysis.front),
                        ("hypervolume", analysis.history)):
        tmp = folder.path / f".{name}.csv.tmp"
        table.to_csv(tmp, index=False)
        tmp.replace(folder.path / f"{name}.csv")
    plots = write_study_plots(analysis, folder.plots)
    if show:
        _print_front(analysis.front, config, analysis.baseline_points_by_task or analysis.baseline_points)
        for note in analysis.approximations.values():
            console.print(f"approximation: {note}")
        if analysis.reference is not None:
            reference = ", ".join(f"{n} {v:.4g}" for n, v in zip(config.objective_names(), analysis.reference))
            console.print(f"hypervolume {analysis.hypervolume:.6g} (reference {reference}; "
                          f"{analysis.reference_source})")
        names = ", ".join(f"plots/{p.name}" for paths in plots.values() for p in paths if p.suffix == ".png")
        console.print(f"outputs in {folder.path}: trials.csv, pareto.csv, hypervolume.csv"
                      + (f", {names} (+ .svg)" if names else ""))


def _print_front(front, config, baseline) -> None:  # noqa: ANN001
    """``baseline``: points, or points per task (a multi-task study)."""
    names = config.objective_names()
    if isinstance(baseline, dict):
        baseline_text = " (baselines " + ", ".join(f"{t} {p:.2f}" for t, p in baseline.items()) + " points)"
    else:
        baseline_text = f" (baseline {baseline:.2f} points)" if baseline is not None else ""
    table = Table(title=f"Pareto front of {config.name}{baseline_text}")
    knob_cols = [f"knob.{k}" for k in config.search_space if f"knob.{k}" in front.columns]
    for col in ["trial", *names, *[c.removeprefix("knob.") for c in knob_cols]]:
        table.add_column(col, justify="right")
    for _, row in front.iterrows():
        cells = [str(int(row["trial"]))] + [f"{row[n]:.4g}" for n in names]
        cells += [f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in knob_cols]
        table.add_row(*cells)
    console.print(table)


def _folder(path: Path):  # noqa: ANN202
    from dse.study.engine import StudyFolder

    return StudyFolder(path)


@study_app.command("run")
def study_run(
    space: Annotated[Path, typer.Argument(help="study definition (YAML)")],
    n_trials: Annotated[Optional[int], typer.Option("--n-trials", min=1)] = None,
    results_dir: Annotated[Path, typer.Option("--results-dir", help="parent of the study folder")] = Path("results"),
    executor: Annotated[Optional[ExecutorKind], Executor] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address")] = None,
    max_in_flight: Annotated[Optional[int], MaxInFlight] = None,
    storage: Annotated[Optional[str], typer.Option(
        "--storage", help="journal (default), sqlite, sqlite:///PATH or postgresql+psycopg2://USER@HOST:PORT/DB")] = None,
) -> None:
    """Run a study (continues it if its folder already exists with the same definition)."""
    from dse.config import load_study_config

    config = load_study_config(space)
    if storage is not None:
        from dse.study.storage import storage_option

        config = config.model_copy(update={"storage": storage_option(storage)})
    _run(_folder(results_dir / config.name), config, n_trials=n_trials,
         executor=executor.value if executor else None,
         ray_address=ray_address, max_in_flight=max_in_flight)


@study_app.command("resume")
def study_resume(
    directory: Annotated[Path, typer.Argument(help="study folder")],
    n_trials: Annotated[Optional[int], typer.Option("--n-trials", min=1)] = None,
    executor: Annotated[Optional[ExecutorKind], Executor] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address")] = None,
    max_in_flight: Annotated[Optional[int], MaxInFlight] = None,
) -> None:
    """Continue a stopped or killed study; unfinished trials are re-queued."""
    folder = _folder(directory)
    _run(folder, folder.load_config(), n_trials=n_trials,
         executor=executor.value if executor else None, ray_address=ray_address,
         max_in_flight=max_in_flight)


@study_app.command("status")
def study_status(
    directory: Annotated[Path, typer.Argument(help="study folder")],
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Trial counts by state, the Pareto size and the hypervolume."""
    from dse.results import analyse_study
    from dse.study.engine import count_complete, open_study

    folder = _folder(directory)
    config = folder.load_config()
    study = open_study(folder, config, create=False)
    states: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    analysis = analyse_study(study, config)
    reference = (None if analysis.reference is None
                 else dict(zip(config.objective_names(), map(float, analysis.reference))))
    info = {"study": config.name, "target_trials": study.user_attrs.get("target_trials", config.n_trials),
            "completed": count_complete(study),
            "states": states, "pareto_size": len(analysis.front),
            "baseline_points": study.user_attrs.get("baseline_points"),
            **{k: study.user_attrs[k] for k in ("baseline_points_by_task", "approximations") if k in study.user_attrs},
            "hypervolume": analysis.hypervolume, "hypervolume_reference": reference,
            "hypervolume_reference_source": analysis.reference_source}
    if fmt is Format.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            console.print(f"{key}: {value}")


@app.command("pareto")
def pareto(directory: Annotated[Path, typer.Argument(help="study folder")]) -> None:
    """Rebuild trials.csv, pareto.csv, hypervolume.csv and plots/; print the Pareto table."""
    folder = _folder(directory)
    _write_outputs(folder, folder.load_config(), show=True)


@app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="study folder")],
    pick: Annotated[Optional[str], Pick] = None,
    trial: Annotated[Optional[int], typer.Option("--trial", min=0)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", help="export folder (default: DIR/exports/<pick or trial-N>)")] = None,
) -> None:
    """Write a chosen design into a folder: design.json, model/ (Hugging Face), accelerator.json."""
    from dse.export import export_design
    from dse.results import pareto_table, pick_label, pick_trial, study_reference, trials_table
    from dse.study.engine import open_study

    if (pick is None) == (trial is None):
        raise DSEError("give exactly one of --pick or --trial")
    folder = _folder(directory)
    config = folder.load_config()
    study = open_study(folder, config, create=False)
    if trial is None:
        trials = trials_table(study, config)
        trial = pick_trial(pareto_table(trials, config), config, pick,
                           reference=study_reference(trials, config)[0])
    name = pick_label(pick) if pick is not None else f"trial-{trial}"
    path = export_design(study, config, trial, output or folder.path / "exports" / name,
                         cache_dir=folder.cache)
    console.print(f"exported trial {trial} to {path}/ (design.json, model/, accelerator.json)")


@app.command("report")
def report(
    directory: Annotated[Path, typer.Argument(help="study folder")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="default: DIR/report.html")] = None,
    design: Annotated[str, typer.Option("--design", callback=_check_pick,
                                        help="pick whose exit layers and per-sentence latencies to show")] = "knee",
) -> None:
    """Write one self-contained HTML report: definition, summary, Pareto table, plots, picks."""
    from dse.report import write_report

    path = write_report(_folder(directory), output, design=design)
    console.print(f"report written to {path}")


@app.command("dashboard")
def dashboard(
    directory: Annotated[Path, typer.Argument(help="study folder")],
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8080,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    allow_writes: Annotated[bool, typer.Option(
        "--allow-writes", help="let the dashboard write the storage (notes, deletions); "
                               "never while a coordinator runs the study")] = False,
) -> None:
    """Serve optuna-dashboard on the study's storage (read-only unless --allow-writes)."""
    from dse.dashboard import make_dashboard_server

    server = make_dashboard_server(_folder(directory), host=host, port=port, allow_writes=allow_writes)
    console.print(f"optuna-dashboard for {directory} at http://{host}:{server.server_port}/ "
                  "(Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command("evaluate")
def evaluate(
    design: Annotated[Path, typer.Argument(help="export folder or its design.json")],
    model: Annotated[bool, typer.Option(
        "--model", help="score the exported Hugging Face model (DESIGN/model, or DESIGN itself if it "
                        "is the model folder) instead of rebuilding it from the study definition")] = False,
) -> None:
    """Re-score an exported design from scratch (same data) and print its metrics as JSON."""
    from dse.evaluate import build_context, evaluate_trial
    from dse.export import load_design

    if model:
        from dse.export import MODEL_DIR
        from dse.hf_export import score_exported_model

        folder = design.parent if design.is_file() else design
        if not (folder / "config.json").is_file():  # an export folder (or its design.json)
            folder = folder / MODEL_DIR
        score = score_exported_model(folder)
        print(json.dumps({"accuracy": score.accuracy, "avg_exit_layer": score.avg_exit_layer,
                          "dev_rows": int(len(score.exit_layers))}))
        return
    data, config = load_design(design)
    ctx = build_context(config, cache_dir=None)
    outcome = evaluate_trial(ctx, config.knob_values({**data["compression"], **data["hardware"]}))
    print(json.dumps(outcome.metrics))


@app.command("deploy")
def deploy(
    directory: Annotated[Path, typer.Argument(help="export folder (written by dse export)")],
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads")] = None,
    max_rows: Annotated[Optional[int], typer.Option("--max-rows", min=1, help="first N of the trial's dev rows")] = None,
) -> None:
    """Write DIR/deploy/ (fp32 + int8 TorchScript early-exit models); print size, accuracy, latency."""
    from dse.deploy import deploy_export

    result = deploy_export(directory, threads=threads, max_rows=max_rows)
    table = Table(title=f"{result.task}: {result.dev_rows} dev rows, batch 1, {result.threads} threads "
                        f"(trial accuracy {result.trial_accuracy:.2f})")
    for col in ("artifact", "size_mb", "accuracy", "avg_exit_layer", "median_ms", "p95_ms"):
        table.add_column(col, justify="right")
    for name, f in (("fp32", result.fp32), ("int8", result.int8)):
        table.add_row(name, f"{f.size_mb:.2f}", f"{f.accuracy:.2f}", f"{f.avg_exit_layer:.2f}",
                      f"{f.latency_median_ms:.2f}", f"{f.latency_p95_ms:.2f}")
    console.print(table)
    print(json.dumps(result.to_json()))


@app.command("prepare")
def prepare(space: Annotated[Path, typer.Argument(help="study definition (YAML)")]) -> None:
    """Fine-tune (or load from the cache) the study's early-exit model(s) and report the baselines."""
    from dse.config import load_study_config
    from dse.evaluate import check_task_data, prepare_for_study

    config = load_study_config(space)
    check_task_data(config)
    for task in config.task_settings():
        prepared = prepare_for_study(config, task)
        info = prepared.info
        console.print(f"prepared {info.task} ({info.train_rows} train rows) at {prepared.path}")
        console.print("dev metric by exit layer: "
                      + ", ".join(f"{100 * m:.2f}" for m in info.baseline_dev_metric_by_layer))
        if task.approximation:
            console.print(f"approximation: {task.approximation}")


@app.command("trace")
def trace(
    csv_path: Annotated[Path, typer.Argument(help="CSV with columns tokens,entropy_1..entropy_L")],
    threshold: Annotated[float, typer.Option("--threshold", min=0.0, help="entropy exit threshold (nats)")],
    model: Annotated[str, typer.Option("--model", help="model whose shapes to use")] = "all-MiniLM-L6-v2",
    num_labels: Annotated[int, typer.Option("--num-labels", min=1)] = 2,
    vmac_lanes: Annotated[int, typer.Option("--vmac-lanes", min=1)] = 16,
    sram_kb: Annotated[float, typer.Option("--sram-kb", min=1.0)] = 64.0,
    envm_cell: Annotated[str, typer.Option("--envm-cell")] = "rram_mlc2",
    voltage_v: Annotated[float, typer.Option("--voltage", min=0.5, max=0.8)] = 0.8,
    latency_target_ms: Annotated[Optional[float], typer.Option("--dvfs-target-ms", min=0.001)] = None,
) -> None:
    """Drive the hardware model with an external per-sentence entropy trace; print JSON figures."""
    from transformers import AutoConfig

    from dse.modeling.loading import resolve_model_source
    from hwmodels import (CompressionProfile, HardwareConfig, ModelShape, evaluate_hardware,
                          exit_layers_from_entropies, fit_exit_predictor, load_entropy_trace)

    try:
        entropies, tokens = load_entropy_trace(csv_path)
        shape = ModelShape.from_hf_config(AutoConfig.from_pretrained(resolve_model_source(model)),
                                          num_labels=num_labels)
        if entropies.shape[1] != shape.num_layers:
            raise ValueError(f"{csv_path} has {entropies.shape[1]} layers but {model} has {shape.num_layers}")
        exits = exit_layers_from_entropies(entropies, threshold)
        dvfs = latency_target_ms is not None
        predicted = fit_exit_predictor(entropies[:, 0], exits).predict(entropies[:, 0]) if dvfs else None
        hw = evaluate_hardware(
            shape, tokens=tokens, exit_layers=exits, compression=CompressionProfile(),
            hardware=HardwareConfig(vmac_lanes=vmac_lanes, sram_kb=sram_kb, envm_cell=envm_cell,
                                    voltage_v=voltage_v, dvfs=dvfs, latency_target_ms=latency_target_ms),
            predicted_exit_layers=predicted,
        )
    except ValueError as exc:
        raise DSEError(str(exc).strip().splitlines()[0]) from None
    print(json.dumps({
        "sentences": int(len(tokens)), "avg_exit_layer": float(exits.mean()),
        "energy_uj": hw.mean_energy_uj, "latency_ms": hw.mean_latency_ms,
        "p95_latency_ms": hw.p95_latency_ms, "target_met_fraction": hw.fraction_target_met,
        "area_mm2": hw.area_mm2, "valid": hw.valid,
    }))


@config_app.command("validate")
def config_validate(space: Annotated[Path, typer.Argument(help="study definition (YAML)")]) -> None:
    """Check a study definition and print its hash."""
    from dse.config import config_hash, load_study_config

    config = load_study_config(space)
    console.print(f"{space}: valid ({len(config.search_space)} knobs searched, "
                  f"{config.n_trials} trials, hash {config_hash(config)[:12]})")


def main(argv: list[str] | None = None) -> int:
    """Entry point: every user error is one line on stderr and a non-zero exit code."""
    logging.basicConfig(level=logging.INFO if _interactive() else logging.WARNING,
                        format="%(levelname)s %(message)s")
    for noisy in ("transformers", "datasets", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        app(args=argv, standalone_mode=False, prog_name="dse")
    except DSEError as exc:
        message = " ".join(str(exc).split("\n"))  # one line, whatever a message quotes
        err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except typer.Exit as exc:  # --help and friends
        return int(getattr(exc, "exit_code", 0) or 0)
    except typer.Abort:
        err_console.print("interrupted; finished trials are saved (resume with: dse study resume DIR)")
        return 130
    except typer.TyperException as exc:  # usage errors: bad or missing arguments
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        err_console.print("interrupted; finished trials are saved (resume with: dse study resume DIR)")
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

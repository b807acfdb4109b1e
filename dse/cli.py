"""The ``dse`` command line: parsing and printing only; every command is one call of :mod:`dse.api`."""

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

from dse import api
from dse.errors import DSEError
from dse.version import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Algorithm/hardware co-design studies for BERT-family models on edge accelerators.")
study_app = typer.Typer(no_args_is_help=True, help="Run, resume and inspect studies.")
config_app = typer.Typer(no_args_is_help=True, help="Study definitions.")
app.add_typer(study_app, name="study")
app.add_typer(config_app, name="config")
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        print(f"dse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[Optional[bool], typer.Option(  # noqa: ARG001 - its callback handles it
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = None) -> None:
    """Algorithm/hardware co-design studies for BERT-family models on edge accelerators."""


class ExecutorKind(str, Enum):
    inline = "inline"
    ray = "ray"


def _check_pick(value: Optional[str]) -> Optional[str]:
    """Reject an unknown --pick while parsing (one ``error:`` line)."""
    if value is not None:
        api.check_pick(value)
    return value


Pick = typer.Option("--pick", callback=_check_pick,
                    help="knee, max-accuracy, min-energy, max-hv-contribution or best:<metric> "
                         "(e.g. best:latency_ms); chosen among the feasible Pareto designs")


class Format(str, Enum):
    table = "table"
    json = "json"


Executor = typer.Option("--executor", help="inline or ray (default: the study definition's)")
MaxInFlight = typer.Option("--max-in-flight", min=1, help="trials evaluated at once (default: executor.max_in_flight)")
DeviceOption = typer.Option("--device", help="auto, cpu, cuda or cuda:N: where torch runs (default: the definition's device)")


def _interactive() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")


def _progress_printer():  # noqa: ANN202
    """A one-line rich status when interactive; silent otherwise."""
    if not _interactive():
        return None, None
    status = console.status("starting…")
    status.start()

    def update(p: api.Progress) -> None:
        status.update(f"completed {p.completed}/{p.target} · failed {p.failed} · "
                      f"cache hits {p.cache_hits} · Pareto {p.pareto_size} · {p.trials_per_minute:.1f} trials/min")

    return update, status


def _run(study: api.Study, *, n_trials: int | None, executor: ExecutorKind | None, ray_address: str | None,
         max_in_flight: int | None, device: str | None = None) -> None:
    start = time.perf_counter()
    update, status = _progress_printer()
    try:
        stats = study.run(n_trials=n_trials, executor=executor.value if executor else None,
                          ray_address=ray_address, max_in_flight=max_in_flight, progress=update, device=device)
    finally:
        if status is not None:
            status.stop()
    console.print(f"{stats.completed} trials complete ({stats.failed} failed this run, "
                  f"{stats.cache_hits} cache hits, {stats.derived} derived designs from the cheap-knob sweep, "
                  f"{stats.screened} ruled out by the hardware model before any model run"
                  + (f", {stats.early_stopped} stopped early after part of their dev pass" if stats.early_stopped else "")
                  + ") "
                  f"in {time.perf_counter() - start:.0f} s")
    _write_outputs(study)


def _write_outputs(study: api.Study) -> None:
    """Rebuild trials.csv, pareto.csv, hypervolume.csv and plots/; print the front and the hypervolume."""
    outputs = study.write_outputs()
    analysis, config = outputs.analysis, study.config
    _print_front(analysis.front, config, analysis.baseline_points_by_task or analysis.baseline_points)
    for note in analysis.approximations.values():
        console.print(f"approximation: {note}")
    if analysis.reference is not None:
        reference = ", ".join(f"{n} {v:.4g}" for n, v in zip(config.objective_names(), analysis.reference))
        console.print(f"hypervolume {analysis.hypervolume:.6g} (reference {reference}; "
                      f"{analysis.reference_source})")
    names = ", ".join(f"plots/{p.name}" for paths in outputs.plots.values() for p in paths if p.suffix == ".png")
    console.print(f"outputs in {study.path}: trials.csv, pareto.csv, hypervolume.csv"
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
    sampler: Annotated[Optional[str], typer.Option(
        "--sampler", help="tpe, nsga2, gp or random (default: the study definition's; kept on resume)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="sampler seed (default: the definition's)")] = None,
    device: Annotated[Optional[str], DeviceOption] = None,
) -> None:
    """Run a study (continues it if its folder already exists with the same definition)."""
    _run(api.Study.create(space, results_dir=results_dir, storage=storage, sampler=sampler, seed=seed),
         n_trials=n_trials, executor=executor, ray_address=ray_address, max_in_flight=max_in_flight, device=device)


@study_app.command("resume")
def study_resume(
    directory: Annotated[Path, typer.Argument(help="study folder")],
    n_trials: Annotated[Optional[int], typer.Option("--n-trials", min=1)] = None,
    executor: Annotated[Optional[ExecutorKind], Executor] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address")] = None,
    max_in_flight: Annotated[Optional[int], MaxInFlight] = None,
    device: Annotated[Optional[str], DeviceOption] = None,
) -> None:
    """Continue a stopped or killed study; unfinished trials are re-queued."""
    _run(api.Study.open(directory), n_trials=n_trials, executor=executor, ray_address=ray_address,
         max_in_flight=max_in_flight, device=device)


@study_app.command("status")
def study_status(
    directory: Annotated[Path, typer.Argument(help="study folder")],
    fmt: Annotated[Format, typer.Option("--format")] = Format.table,
) -> None:
    """Trial counts by state, the Pareto size and the hypervolume."""
    info = api.Study.open(directory).status()
    if fmt is Format.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            console.print(f"{key}: {value}")


@app.command("pareto")
def pareto(directory: Annotated[Path, typer.Argument(help="study folder")]) -> None:
    """Rebuild trials.csv, pareto.csv, hypervolume.csv and plots/; print the Pareto table."""
    _write_outputs(api.Study.open(directory))


@app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="study folder")],
    pick: Annotated[Optional[str], Pick] = None,
    trial: Annotated[Optional[int], typer.Option("--trial", min=0)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", help="export folder (default: DIR/exports/<pick or trial-N>)")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="write into a non-empty folder that is not an export of this design")] = False,
) -> None:
    """Write a chosen design into a folder: design.json, model/ (Hugging Face), accelerator.json."""
    if (pick is None) == (trial is None):
        raise DSEError("give exactly one of --pick or --trial")
    exported = api.Study.open(directory).export(pick=pick, trial=trial, out=output, force=force)
    console.print(f"exported trial {exported.trial} to {exported.path}/ (design.json, model/, accelerator.json)")


@app.command("report")
def report(
    directory: Annotated[Path, typer.Argument(help="study folder")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="default: DIR/report.html")] = None,
    design: Annotated[str, typer.Option("--design", callback=_check_pick,
                                        help="pick whose exit layers and per-sentence latencies to show")] = "knee",
) -> None:
    """Write one self-contained HTML report: definition, summary, Pareto table, plots, picks."""
    path = api.Study.open(directory).report(out=output, design=design)
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
    server = api.Study.open(directory).dashboard(host=host, port=port, allow_writes=allow_writes)
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
    print(json.dumps(api.evaluate_export(design, model=model)))


@app.command("deploy")
def deploy(
    directory: Annotated[Path, typer.Argument(help="export folder (written by dse export)")],
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, help="CPU threads (onnx default: measure at 1, 2 and 4)")] = None,
    max_rows: Annotated[Optional[int], typer.Option("--max-rows", min=1, help="first N of the trial's dev rows")] = None,
    format: Annotated[str, typer.Option(  # noqa: A002
        "--format", help="onnx (onnxruntime, the deployable), litert (LiteRT; pip install "
                         "'edgebert-dse[litert]') or torchscript (legacy)")] = "onnx",
    lengths: Annotated[Optional[str], typer.Option(
        "--lengths", help="litert: the sequence lengths to hold signatures for, e.g. 16,64,128 "
                          "(default: 32 and the export's max_seq_length)")] = None,
) -> None:
    """Write DIR/deploy/ (fp32 + int8 early-exit deployables); print size, accuracy, latency."""
    result = api.deploy(directory, threads=threads, max_rows=max_rows, format=format,
                        lengths=_lengths(lengths))
    table = Table(title=f"{result.task}, {result.format}: {result.dev_rows} dev rows, batch 1 "
                        f"(trial accuracy {result.trial_accuracy:.2f})")
    thread_counts = list(result.fp32.latency_ms_by_threads)
    for col in ("artifact", "size_mb", "accuracy", "avg_exit_layer", "same_pred_as_trial", "same_exit_as_trial",
                *(f"median/p95_ms@{t}" for t in thread_counts)):
        table.add_column(col, justify="right")
    for name, f in (("fp32", result.fp32), ("int8", result.int8)):
        table.add_row(name, f"{f.size_mb:.2f}", f"{f.accuracy:.2f}", f"{f.avg_exit_layer:.2f}",
                      f"{100 * f.trial_agreement:.1f}%", f"{100 * f.exit_agreement:.1f}%",
                      *(f"{v['median_ms']:.2f}/{v['p95_ms']:.2f}" for v in f.latency_ms_by_threads.values()))
    console.print(table)
    edge = result.edge_summary()
    speed = ("1 thread not measured" if edge["sentences_per_s_1_thread"] is None
             else f"{edge['sentences_per_s_1_thread']:.0f} sentences/s on 1 thread (edge bar: at least 1/s)")
    console.print(f"int8: {100 * edge['int8_size_vs_fp32']:.1f} % of fp32, "
                  f"{edge['times_smaller_than_bert_large_fp32']:.0f}x smaller than fp32 BERT-large "
                  f"({edge['bert_large_fp32_mb']:.0f} MB), {edge['accuracy_drop_points']:.2f} points below the trial, "
                  f"{speed}")
    print(json.dumps(result.to_json()))


@app.command("prepare")
def prepare(space: Annotated[Path, typer.Argument(help="study definition (YAML)")],
            device: Annotated[Optional[str], DeviceOption] = None) -> None:
    """Fine-tune (or load from the cache) the study's early-exit model(s) and report the baselines."""
    def show(prepared: api.PreparedTask) -> None:
        task, info = prepared.task, prepared.prepared.info
        console.print(f"prepared {info.task} ({info.train_rows} train rows) at {prepared.prepared.path}")
        console.print("dev metric by exit layer: "
                      + ", ".join(f"{100 * m:.2f}" for m in info.baseline_dev_metric_by_layer))
        if task.approximation:
            console.print(f"approximation: {task.approximation}")

    api.prepare(space, progress=show, device=device)


def _thresholds(text: str | None) -> float | list[float] | None:
    """``--threshold``: one entropy (nats) for every layer, or one per layer separated by commas."""
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected a number of nats, or one per layer separated by commas; got {text!r}",
                                 param_hint="'--threshold'") from None
    return values[0] if len(values) == 1 else values


def _lengths(text: str | None) -> list[int] | None:
    """``--lengths``: token counts separated by commas."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected token counts separated by commas, e.g. 32,128; got {text!r}",
                                 param_hint="'--lengths'") from None


@app.command("trace")
def trace(
    csv_path: Annotated[Path, typer.Argument(help="CSV: header tokens,entropy_1..entropy_L, one row per sentence")],
    profile: Annotated[Optional[Path], typer.Option(
        "--profile", help="YAML or JSON file of the options below (the flags override it)")] = None,
    threshold: Annotated[Optional[str], typer.Option(
        "--threshold", help="entropy exit threshold (nats): one, or one per layer (comma-separated)")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="model whose shape to cost: name, folder or config.json (default all-MiniLM-L6-v2)")] = None,
    num_labels: Annotated[Optional[int], typer.Option("--num-labels", help="classes (default 2)")] = None,
    offramp_head: Annotated[Optional[str], typer.Option(
        "--offramp-head", help="off-ramp head: pooler (EdgeBERT, default) or linear")] = None,
    offramp_pooling: Annotated[Optional[str], typer.Option(
        "--offramp-pooling", help="off-ramp input: cls (EdgeBERT, default) or mean")] = None,
    encoder_density: Annotated[Optional[float], typer.Option(
        "--encoder-density", help="non-zero fraction of encoder weights (default 1.0)")] = None,
    embedding_density: Annotated[Optional[float], typer.Option(
        "--embedding-density", help="non-zero fraction of embedding entries (default 1.0)")] = None,
    weight_bits: Annotated[Optional[int], typer.Option("--weight-bits", help="AdaptivFloat weight bits (default 8)")] = None,
    weight_exp_bits: Annotated[Optional[int], typer.Option(
        "--weight-exp-bits", help="AdaptivFloat weight exponent bits (default 3)")] = None,
    activation_bits: Annotated[Optional[int], typer.Option(
        "--activation-bits", help="datapath activation bits (default 8)")] = None,
    attention_span: Annotated[Optional[int], typer.Option(
        "--attention-span", help="largest query-key distance attended (default full)")] = None,
    vmac_lanes: Annotated[Optional[int], typer.Option("--vmac-lanes", help="VMAC lanes (default 16)")] = None,
    vector_size: Annotated[Optional[int], typer.Option("--vector-size", help="MACs per lane (default 16)")] = None,
    sram_kb: Annotated[Optional[float], typer.Option("--sram-kb", help="SRAM buffer, KiB (default 64)")] = None,
    envm_cell: Annotated[Optional[str], typer.Option("--envm-cell", help="eNVM cell (default rram_mlc2)")] = None,
    voltage_v: Annotated[Optional[float], typer.Option(
        "--voltage-v", "--voltage", help="supply voltage, V; with DVFS layer 1's (default 0.8)")] = None,
    latency_target_ms: Annotated[Optional[float], typer.Option(
        "--latency-target-ms", "--dvfs-target-ms", help="per-sentence latency target: turns DVFS on")] = None,
    fit_fraction: Annotated[Optional[float], typer.Option(
        "--fit-fraction", help="held-out part of the trace that fits the DVFS predictor, 0 < F < 1 (default 0.25)")] = None,
    fit_seed: Annotated[Optional[int], typer.Option("--fit-seed", help="seed of the held-out rows (default 0)")] = None,
    fit_trace: Annotated[Optional[Path], typer.Option(
        "--fit-trace", help="a second trace that fits the DVFS predictor instead (every row scored)")] = None,
) -> None:
    """Cost an external per-sentence entropy trace on the hardware model; print JSON figures.

    The DVFS predictor is fitted on held-out rows of the trace or on --fit-trace, never on a scored row.
    """
    print(json.dumps(api.evaluate_trace(
        csv_path, profile=profile, threshold=_thresholds(threshold), model=model, num_labels=num_labels,
        offramp_head=offramp_head, offramp_pooling=offramp_pooling,
        encoder_density=encoder_density, embedding_density=embedding_density, weight_bits=weight_bits,
        weight_exp_bits=weight_exp_bits, activation_bits=activation_bits, attention_span=attention_span,
        vmac_lanes=vmac_lanes, vector_size=vector_size, sram_kb=sram_kb, envm_cell=envm_cell,
        voltage_v=voltage_v, latency_target_ms=latency_target_ms, fit_fraction=fit_fraction,
        fit_seed=fit_seed, fit_trace=fit_trace)))


@config_app.command("validate")
def config_validate(space: Annotated[Path, typer.Argument(help="study definition (YAML)")]) -> None:
    """Check a study definition and print its hash."""
    config = api.load_study_config(space)
    api.check_definition_paths(config)  # the model and GLUE folders exist (what a run needs first)
    console.print(f"{space}: valid ({len(config.search_space)} knobs searched, "
                  f"{config.n_trials} trials, hash {api.config_hash(config)[:12]})")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of a study definition (knobs, metrics, tasks, cells and samplers as enums).

    Save it, e.g. as study.schema.json, and make a study definition's first line
    "# yaml-language-server: $schema=study.schema.json" for completion and checks in editors.
    """
    print(json.dumps(api.config_schema(), indent=2))


def main(argv: list[str] | None = None) -> int:
    """Entry point: every user error is one line on stderr and a non-zero exit code."""
    logging.basicConfig(level=logging.INFO if _interactive() else logging.WARNING,
                        format="%(levelname)s %(message)s")
    # torchao (installed with the litert extra) is imported by transformers whenever it is present
    # and warns that its CUDA kernels and triton are missing; torch's pytree notes torchao's enums
    for noisy in ("transformers", "datasets", "httpx", "filelock", "torchao", "torch.utils._pytree"):
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

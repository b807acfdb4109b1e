"""Search efficiency against ground truth: how much of the true front each sampler finds per budget
(issue #19 item 1).

The space is the default study's (``search_spaces/sst2_minilm.yaml``: the real prepared MiniLM,
the full SST-2 dev set, its constraints and hypervolume reference) cut to a grid small enough to
enumerate: a few values of each compression knob (``--grid``), the exit threshold and the
hardware knobs on their grids. Every compression setting's per-layer dev logits are computed once
(cached in ``--cache-dir``, so a rerun takes minutes); the exhaustive feasible front and its
hypervolume follow without another model run (the cheap-knob scorer of ``dse.study.sweep``).

Then each sampler (TPE, NSGA-II, GP, random; TPE also with the cheap-knob sweep, as the default
study runs, and with the sweep plus early stopping) runs a real study (``run_study``: hardware-first
screening, the sweep, the staged evaluation's real rule) per seed, extended to each budget in turn
as a user resumes a study (``--caps`` stops a variant at a smaller largest budget: GP's asks grow
with the study). Trials are
scored from the logits in memory, and a run counts the model dev passes it would have spent with
a cache of its own: a compression setting's first full evaluation is one pass, an early-stopped
one the fraction of the dev rows it scored, a later full pass of a partly scored setting the rest.

Printed: the exhaustive front, then per variant and budget the hypervolume as a fraction of the
exhaustive one (median and range over seeds) and the dev passes spent. The last line is
``best_sampler=... hv_ratio_at_50=... hv_ratio_at_200=... random_trials_for_same_hv_x=...
dev_passes_saved=... overhead_ms_at_2000=...``: ``best_sampler`` is the variant with the highest
median ratio at the largest budget; ``random_trials_for_same_hv_x`` how many times its budget
random search needs for the same median hypervolume (``>N`` when random never gets there within
``N`` times); ``dev_passes_saved`` the fraction of dev passes TPE with hardware-first screening
and early stopping saves against plain TPE at the largest budget (with its hypervolume ratio
beside it); ``overhead_ms_at_2000`` the coordinator's time per trial from
``benchmarks/coordinator_cost.py`` (``--overhead-trials 0``: not measured).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dse.analysis.results import hypervolume
from dse.compression.spec import CompressionSpec
from dse.config import load_study_config, parse_study_config
from dse.evaluation import EarlyStopRule, StagedEvaluation, build_context, evaluate_trial
from dse.evaluation.cache import eval_key, layer_logits
from dse.study.engine import StudyFolder, _constraints, open_study, run_study
from dse.study.pareto import feasible, pareto_mask
from dse.evaluation.score import design_metrics
from dse.study.sweep import _task_scores

DEFAULT_GRID = {  # compression knobs: 3 values each, 3 x 3 x 2 x 2 x 2 = 72 dev passes to enumerate
    "encoder_pruning": [0.0, 0.3, 0.6],
    "embedding_pruning": [0.0, 0.4, 0.8],
    "weight_bits": [6, 8],
    "weight_exp_bits": [3, 4],
    "attention_span": [32, 512],
}
CHEAP_GRID = {
    "exit_threshold": [round(0.1 * i, 2) for i in range(7)],
    "vmac_lanes": [4, 8, 16, 32],
    "sram_kb": [64, 256, 1024, 4096],
    "envm_cell": ["rram_slc", "rram_mlc2", "rram_mlc3", "stt_mram", "pcm"],
    "voltage_v": [0.5, 0.6, 0.7, 0.8],
}
VARIANTS = {  # name: (sampler, sweep, early stopping)
    "tpe": ("tpe", False, False), "nsga2": ("nsga2", False, False), "gp": ("gp", False, False),
    "random": ("random", False, False), "tpe+sweep": ("tpe", True, False), "tpe+sweep+es": ("tpe", True, True),
}


def _space(grid: dict[str, list[Any]]) -> dict[str, Any]:
    return {name: {"type": "categorical", "choices": values} for name, values in {**grid, **CHEAP_GRID}.items()}


def enumerate_front(ctx: Any, config: Any, grid: dict[str, list[Any]]) -> tuple[np.ndarray, int]:
    """The exhaustive feasible front's objective values and the number of designs scored."""
    names, directions = config.objective_names(), config.directions()
    cheap = [dict(zip(CHEAP_GRID, combo)) for combo in itertools.product(*CHEAP_GRID.values())]
    points, total = [], 0
    for combo in itertools.product(*grid.values()):
        knobs = config.knob_values({**dict(zip(grid, combo)), **cheap[0]})
        designs = [{**knobs, **c} for c in cheap]
        for d, score in zip(designs, _task_scores(ctx, designs)):
            total += 1
            if score is None:
                continue
            metrics, _ = design_metrics(ctx, score.points, score.exit_layers, score.hw, score.faults)
            if all(v <= 0 for v in _constraints(config, metrics).values()):  # as the coordinator records it
                points.append([metrics[n] for n in names])
        if points:
            arr = np.array(points)
            points = arr[pareto_mask(arr, directions)].tolist()
    return np.array(points), total


class PassCounter:
    """Dev passes a run would spend with a logits cache of its own (see the module)."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}  # eval key -> fraction of the dev rows scored in this run
        self.passes = 0.0

    def is_cached(self, ctx: Any, spec: CompressionSpec) -> bool:
        return self.seen.get(eval_key(ctx, spec), 0.0) >= 1.0

    def full(self, ctx: Any, knobs: dict[str, Any]) -> Any:
        key = eval_key(ctx, CompressionSpec.from_knobs(knobs))
        self.passes += 1.0 - self.seen.get(key, 0.0)
        out = evaluate_trial(ctx, knobs)
        hit = self.seen.get(key, 0.0) >= 1.0
        self.seen[key] = 1.0
        return type(out)(out.metrics, out.attrs, hit, out.seconds, out.sentences)

    def staged(self, rule: EarlyStopRule, stages: tuple[float, ...], confidence: float) -> StagedEvaluation:
        counter = self

        class Counting(StagedEvaluation):
            def __call__(self, ctx: Any, knobs: dict[str, Any]) -> Any:
                out = super().__call__(ctx, knobs)
                if out.pruned is not None:
                    key = eval_key(ctx, CompressionSpec.from_knobs(knobs))
                    before = counter.seen.get(key, 0.0)
                    stage = float(out.attrs["early_stop"]["stage"])
                    counter.passes += max(0.0, stage - before)
                    counter.seen[key] = max(before, stage)
                return out

        return Counting(self.full, rule, stages, confidence, is_cached=self.is_cached)


def run_variant(ctx: Any, base: Any, variant: str, budgets: list[int], seed: int, reference: np.ndarray,
                workdir: Path) -> dict[int, dict[str, Any]]:
    """One study of ``variant`` with ``seed``, run to each budget in turn (a resume each time, as a
    user extends a study): the figures at every budget."""
    sampler, sweep, early = VARIANTS[variant]
    config = base.model_copy(update={
        "name": f"{variant.replace('+', '-')}-{seed}", "n_trials": budgets[-1],
        "sampler": base.sampler.model_copy(update={"name": sampler, "seed": seed}),
        "sweep": base.sweep.model_copy(update={"enabled": sweep}),
    })
    counter = PassCounter()
    evaluate: Any = counter.full
    if early:
        es = config.early_stopping
        evaluate = counter.staged(EarlyStopRule.for_study(config), es.stages, es.confidence)
    folder = StudyFolder(workdir / config.name)
    out: dict[int, dict[str, Any]] = {}
    seconds, screened, stopped = 0.0, 0, 0
    for budget in budgets:
        start = time.perf_counter()
        stats = run_study(folder, config, n_trials=budget, context=ctx, evaluate=evaluate)
        seconds += time.perf_counter() - start
        screened, stopped = screened + stats.screened, stopped + stats.early_stopped
        study = open_study(folder, config, create=False)
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and feasible(t)]
        hv = hypervolume(np.array([t.values for t in done]), config.directions(), reference) if done else 0.0
        history = []  # the run's hypervolume after each budget trial (for "random needs x times")
        front: list[list[float]] = []
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            if t.state.name == "COMPLETE" and feasible(t):
                front.append(list(t.values))
            if t.state.name == "COMPLETE" and not t.user_attrs.get("derived"):
                history.append(front and hypervolume(np.array(front), config.directions(), reference) or 0.0)
        out[budget] = {"hv": hv, "passes": counter.passes, "screened": screened, "early_stopped": stopped,
                       "seconds": seconds, "history": history}
    return out


def plot_efficiency(results: dict[tuple[str, int], list[dict[str, Any]]], exhaustive: float, out: Path) -> None:
    """Median hypervolume ratio against median dev passes, one line per variant, a point per budget
    (the bars: the range over seeds)."""
    import matplotlib.pyplot as plt  # lazy: only with --plot

    from dse.analysis.plots import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for variant in dict.fromkeys(v.replace("random-long", "random") for v, _ in results):
        runs = sorted((b, rs) for (v, b), rs in results.items() if v.replace("random-long", "random") == variant)
        ratios = [np.array([r["hv"] / exhaustive for r in rs]) for _, rs in runs]
        passes = [float(np.median([r["passes"] for r in rs])) for _, rs in runs]
        mid = np.array([float(np.median(r)) for r in ratios])
        spread = np.array([mid - [r.min() for r in ratios], [r.max() for r in ratios] - mid])
        ax.errorbar(passes, mid, yerr=spread, marker="o", ms=4, capsize=2, lw=1.2, label=variant)
        for (budget, _), x, y in zip(runs, passes, mid):
            ax.annotate(str(budget), (x, y), textcoords="offset points", xytext=(3, -9), fontsize=7)
    ax.set_xlabel("model dev passes (median over seeds)")
    ax.set_ylabel("hypervolume / exhaustive")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--definition", default="search_spaces/sst2_minilm.yaml")
    ap.add_argument("--grid", type=json.loads, default=DEFAULT_GRID,
                    help="compression knob -> values, as JSON (default: 72 settings)")
    ap.add_argument("--budgets", default="25,50,100,200")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "edgebert-dse" / "search-efficiency")
    ap.add_argument("--caps", type=json.loads, default={},
                    help='variant -> largest budget, as JSON (e.g. {"gp": 50}: GP asks grow with the study)')
    ap.add_argument("--random-factor", type=int, default=5,
                    help="random search also runs to this many times the largest budget")
    ap.add_argument("--overhead-trials", type=int, default=2000,
                    help="coordinator cost measured at this study size (0: not measured)")
    ap.add_argument("--plot", type=Path, default=None,
                    help="also draw the hypervolume ratio against dev passes per variant (.png and .svg)")
    ap.add_argument("--results", type=Path, default=None, help="also write every run's figures as JSON")
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    variants = args.variants.split(",")

    base = load_study_config(args.definition)
    base = parse_study_config({**base.model_dump(mode="json"), "search_space": _space(args.grid)},
                              source="search_efficiency")
    ctx = build_context(base, cache_dir=args.cache_dir)
    start = time.perf_counter()
    for combo in itertools.product(*args.grid.values()):  # one dev pass per setting, cached
        layer_logits(ctx, CompressionSpec.from_knobs(base.knob_values({**dict(zip(args.grid, combo)),
                                                                      **{k: v[0] for k, v in CHEAP_GRID.items()}})))
    print(f"logits of {math.prod(len(v) for v in args.grid.values())} compression settings ready in "
          f"{time.perf_counter() - start:.0f} s (cache {args.cache_dir})")
    assert base.hypervolume_reference is not None
    reference = np.array([base.hypervolume_reference[n] for n in base.objective_names()])
    front, total = enumerate_front(ctx, base, args.grid)
    exhaustive = hypervolume(front, base.directions(), reference)
    print(f"exhaustive: {total} designs, feasible front of {len(front)}, hypervolume {exhaustive:.6g}")

    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant, seed in itertools.product(variants, range(args.seeds)):
            mine = [b for b in budgets if b <= args.caps.get(variant, budgets[-1])]
            if variant == "random":  # how far random search has to go for the best one's hypervolume
                mine.append(budgets[-1] * args.random_factor)
            for budget, r in run_variant(ctx, base, variant, mine, seed, reference, Path(tmp)).items():
                key = "random-long" if budget > budgets[-1] else variant
                results.setdefault((key, budget), []).append(r)
    print(f"{'variant':<14} {'budget':>6} {'hv ratio median':>16} {'range':>15} {'dev passes':>11} "
          f"{'screened':>9} {'stopped':>8} {'s/run':>6}")
    median: dict[tuple[str, int], float] = {}
    for (variant, budget), runs in results.items():
        variant = variant.replace("random-long", "random")
        ratios = [r["hv"] / exhaustive for r in runs]
        median.setdefault((variant, budget), float(np.median(ratios)))
        print(f"{variant:<14} {budget:>6} {median[variant, budget]:>16.3f} {min(ratios):>7.3f}..{max(ratios):<7.3f} "
              f"{np.median([r['passes'] for r in runs]):>11.2f} {np.median([r['screened'] for r in runs]):>9.0f} "
              f"{np.median([r['early_stopped'] for r in runs]):>8.0f} {np.mean([r['seconds'] for r in runs]):>6.1f}")

    if args.results:
        args.results.write_text(json.dumps({"exhaustive_hv": exhaustive, "front": front.tolist(), "runs": [
            {"variant": v, "budget": b, **r} for (v, b), runs in results.items() for r in runs]}, indent=1))
    if args.plot:
        plot_efficiency(results, exhaustive, args.plot)

    top = budgets[-1]
    best = max(variants, key=lambda v: median.get((v, top), -1.0))
    x = "n/a"
    if "random" in variants:  # random's trials to reach the best variant's median hypervolume
        target = median[best, top] * exhaustive
        needed = []
        for r in results["random-long", top * args.random_factor]:
            hit = next((i + 1 for i, hv in enumerate(r["history"]) if hv >= target), None)
            needed.append(hit if hit is not None else math.inf)
        need = float(np.median(needed))
        x = f"{need / top:.2f}" if math.isfinite(need) else f">{args.random_factor}"
    saved = "n/a"
    if {"tpe", "tpe+sweep+es"} <= set(variants):
        plain = np.median([r["passes"] for r in results["tpe", top]])
        staged = np.median([r["passes"] for r in results["tpe+sweep+es", top]])
        saved = f"{1 - staged / plain:.2f}" if plain else "n/a"
    overhead = "not_measured"
    if args.overhead_trials:
        from coordinator_cost import coordinator_ms_per_trial  # benchmarks/ is the script's folder

        overhead = f"{coordinator_ms_per_trial([args.overhead_trials])[args.overhead_trials]:.1f}"
    hv50 = f"{median[best, 50]:.3f}" if (best, 50) in median else "n/a"
    hv200 = f"{median[best, 200]:.3f}" if (best, 200) in median else "n/a"
    print(f"best_sampler={best} hv_ratio_at_50={hv50} hv_ratio_at_200={hv200} random_trials_for_same_hv_x={x} "
          f"dev_passes_saved={saved} overhead_ms_at_2000={overhead}")


if __name__ == "__main__":
    main()

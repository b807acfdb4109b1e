"""Crash and resume: a small real study, SIGKILLed at a random moment, then resumed until done.

Each run starts ``dse study run`` on a small variant of ``search_spaces/smoke.yaml`` (the real
fine-tuned MiniLM, real SST-2 dev rows, a tiny dev subset, a few trials) in a fresh results
folder, kills it with SIGKILL at a uniformly random moment of a normal run's duration, and runs
``dse study resume`` until it exits 0. It then checks:

* lost: trials that were COMPLETE before the kill and are not COMPLETE with the same values after;
* duplicates: model evaluations that ran to completion twice (logits-cache misses recorded on
  COMPLETE trials, counted per evaluation key; a re-queued trial must hit the cache instead);
* trials_ok: exactly the asked number of budget trials COMPLETE, none left RUNNING or WAITING,
  and ``trials.csv`` agreeing with the storage.

Needs ``DSE_GLUE_DIR`` (SST-2) and uses ``DSE_CACHE_DIR`` for the fine-tuned model (trained once
if missing). The last printed line is ``runs=<N> lost=<n> duplicates=<n> trials_ok=<true|false>``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _dse(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("dse")
    return [str(exe), *args] if exe.is_file() else [sys.executable, "-m", "dse.cli", *args]


def _definition(path: Path, *, trials: int, dev_subset: int) -> str:
    data = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    data["name"] = "crash"
    data["n_trials"] = trials
    data["data"]["dev_subset"] = dev_subset
    data["sweep"] = {"enabled": False}  # only budget trials: every one a possible kill point
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return data["name"]


def _complete(folder: Path) -> dict[int, tuple[float, ...]]:
    from optuna.trial import TrialState

    from dse.study.engine import StudyFolder, open_study

    if not (folder / "config.sha256").is_file():
        return {}
    f = StudyFolder(folder)
    try:
        study = open_study(f, f.load_config(), create=False)
    except Exception:  # killed before the study was created: nothing finished yet
        return {}
    return {t.number: tuple(t.values) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}


def _check(folder: Path, trials: int) -> tuple[int, bool, str]:
    """(duplicate evaluations, trials ok, phase notes) of a finished study folder."""
    from optuna.trial import TrialState

    from dse.study.engine import StudyFolder, count_complete, open_study

    f = StudyFolder(folder)
    study = open_study(f, f.load_config(), create=False)
    budget = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if not t.user_attrs.get("derived")]
    misses = Counter(t.user_attrs["details"]["eval_key"] for t in budget if not t.user_attrs.get("cache_hit"))
    duplicates = sum(n - 1 for n in misses.values())
    left = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    table = pd.read_csv(folder / "trials.csv")
    ok = (count_complete(study) == trials and not left and len(table) == len(study.trials)
          and (folder / "pareto.csv").is_file())
    orphans = sum(t.user_attrs.get("fail_reason") == "coordinator stopped" for t in study.trials)
    return duplicates, ok, f"{len(misses)} model evaluations, {orphans} trial(s) re-queued"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--trials", type=int, default=4, help="budget of each study")
    ap.add_argument("--dev-subset", type=int, default=64, help="dev rows scored per trial")
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="crash-resume-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "crash.yaml"
    name = _definition(spec, trials=args.trials, dev_subset=args.dev_subset)
    rng = random.Random(args.seed)

    # Fine-tune into DSE_CACHE_DIR if needed, then time a whole run on the cached model.
    prepared = subprocess.run(_dse("prepare", str(spec)), capture_output=True, text=True)
    if prepared.returncode != 0:
        sys.exit(f"preparation failed: {prepared.stderr.strip()}")
    start = time.perf_counter()
    ref = subprocess.run(_dse("study", "run", str(spec), "--results-dir", str(work / "timing")),
                         capture_output=True, text=True)
    if ref.returncode != 0:
        sys.exit(f"timing run failed: {ref.stderr.strip()}")
    span_s = time.perf_counter() - start
    print(f"a whole run takes {span_s:.1f} s; each run is killed at a uniform moment in [0, {span_s:.1f}] s")

    lost_total = dup_total = 0
    all_ok = True
    for i in range(args.runs):
        results = work / f"run-{i:03d}"
        folder = results / name
        kill_at = rng.uniform(0.0, span_s)
        child = subprocess.Popen(_dse("study", "run", str(spec), "--results-dir", str(results)),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            child.wait(timeout=kill_at)
            killed = False
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed = True
        before = _complete(folder)
        for _ in range(5):  # a resume is not killed; retry only if it fails outright
            # killed before the definition was recorded: nothing to resume, so run it again
            again = (_dse("study", "resume", str(folder)) if (folder / "config.yaml").is_file()
                     else _dse("study", "run", str(spec), "--results-dir", str(results)))
            resumed = subprocess.run(again, capture_output=True, text=True)
            if resumed.returncode == 0:
                break
            print(f"  resume failed: {resumed.stderr.strip()[-300:]}")
        after = _complete(folder)
        lost = sum(1 for k, v in before.items() if after.get(k) != v)
        duplicates, ok, notes = _check(folder, args.trials)
        lost_total += lost
        dup_total += duplicates
        all_ok &= ok and resumed.returncode == 0
        print(f"run {i}: {'killed' if killed else 'finished'} at {kill_at:.1f} s with {len(before)} trial(s) "
              f"complete; after resume {len(after)}; lost {lost}, duplicates {duplicates}, ok {ok} ({notes})",
              flush=True)
        if args.keep is None:
            shutil.rmtree(results, ignore_errors=True)
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"runs={args.runs} lost={lost_total} duplicates={dup_total} trials_ok={str(all_ok).lower()}")


if __name__ == "__main__":
    main()

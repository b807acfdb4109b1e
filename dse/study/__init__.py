"""Running a study: the coordinator, where trials are evaluated and stored, and the cheap-knob sweep.

Owns the study folder and the Optuna ask-and-tell loop with its lock, resume and retries
(:mod:`~dse.study.engine`), the executors that run evaluations inline or on Ray
(:mod:`~dse.study.executors`), the storage backends (:mod:`~dse.study.storage`: journal, SQLite,
PostgreSQL), the derived trials of the cheap-knob sweep (:mod:`~dse.study.sweep`) and
feasibility and Pareto dominance (:mod:`~dse.study.pareto`). May import :mod:`dse.evaluation`
and everything below it; never the analysis, artifacts, API or CLI.
"""

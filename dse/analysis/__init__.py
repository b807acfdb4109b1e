"""Reading a study: tables, hypervolume, picks, plots, the HTML report and the dashboard.

Owns the trials and Pareto tables, the hypervolume and its history, the named picks and
:class:`~dse.analysis.results.StudyAnalysis` (:mod:`~dse.analysis.results`), the static plots
(:mod:`~dse.analysis.plots`), the self-contained report (:mod:`~dse.analysis.report`) and
optuna-dashboard on the study storage (:mod:`~dse.analysis.dashboard`). Only reads the storage.
May import :mod:`dse.study` and everything below it; never the artifacts, API or CLI.
"""

"""Compression methods, one module per method, and what a trial's compression knobs mean.

Owns magnitude pruning and its schedules (:mod:`~dse.compression.pruning`), movement pruning
(:mod:`~dse.compression.movement`), AdaptivFloat quantization (:mod:`~dse.compression.adaptivfloat`),
eNVM fault injection into stored tables (:mod:`~dse.compression.envm_faults`), the knob specs
(:mod:`~dse.compression.spec`: :class:`CompressionSpec`, :class:`TrainingSpec`) and applying a
trial's post-training compression to a model copy (:mod:`~dse.compression.apply`), with the earlier
off-ramps calibrated on the compressed model (:mod:`~dse.compression.offramp_calibration`). May import
:mod:`dse.modeling`, :mod:`dse.data`, :mod:`dse.config`, the bottom modules and ``hwmodels``.
"""

"""Fine-tuning: the study's prepared model and compression-aware fine-tunes, both cached on disk.

Owns the two-stage off-ramp fine-tune of the uncompressed model (:mod:`~dse.training.prepare`,
keyed by a content hash), the compression-aware fine-tune under a trial's training-time knobs
(:mod:`~dse.training.trainer`), its pruning schedule (:mod:`~dse.training.schedule`), the
distillation loss (:mod:`~dse.training.distillation`) and linear heads on frozen features (the
linear probe and the stage-2 fit of a ``linear`` off-ramp, :mod:`~dse.training.probe`). May import :mod:`dse.compression`,
:mod:`dse.modeling`, :mod:`dse.data`, :mod:`dse.config` and the bottom modules.
"""

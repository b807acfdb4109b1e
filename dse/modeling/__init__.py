"""The early-exit model: BERT/ALBERT/MobileBERT with an off-ramp after every layer, and running it.

Owns the model and its layer loop with attention-span masks (:mod:`~dse.modeling.early_exit`,
:mod:`~dse.modeling.span`), loading backbones and tokenizers (:mod:`~dse.modeling.loading`),
tokenized row sets and batching (:mod:`~dse.modeling.batching`) and batched inference over them
(:mod:`~dse.modeling.inference`), and where torch runs: the device setting, training and
evaluation precision (:mod:`~dse.modeling.device`). May import :mod:`dse.data`, :mod:`dse.config` and the
bottom modules; nothing that compresses, trains or scores.
"""

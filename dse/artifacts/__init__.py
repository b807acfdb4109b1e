"""What leaves a study: a chosen design as files, and the deployables built from them.

Owns the design export folder and its versioned ``design.json`` (:mod:`~dse.artifacts.export`),
the compressed model as a Hugging Face folder with its loader and scorer
(:mod:`~dse.artifacts.hf_export`), the deployment check (:mod:`~dse.artifacts.deploy`, its request
checked first without torch by :mod:`~dse.artifacts.deploy_request`): per-layer
fp32/int8 ONNX graphs (:mod:`~dse.artifacts.onnx_export`) or, with the ``litert`` extra, one LiteRT
file of per-layer signatures (:mod:`~dse.artifacts.litert_export`), run by a host exit loop
(:mod:`~dse.artifacts.onnx_runner`, numpy + onnxruntime or ai_edge_litert only), and legacy
TorchScript, all traced from the model's own steps (:mod:`~dse.artifacts.traceable`); and the
guarded reading of an export's files back (:mod:`~dse.artifacts.reading`: damage is one line
naming the file). May import :mod:`dse.analysis` and everything below it; never the API or CLI.
"""

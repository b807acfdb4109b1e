"""What ``dse deploy`` is asked to do, checked before anything heavy is imported: the format (and
the packages it needs), ``lengths`` and ``max_rows``, and that the folder is an export. Bad input
is one line at once, not after seconds of torch imports. Imports only ``dse.errors`` and
:mod:`dse.artifacts.export`'s folder layout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dse.artifacts.export import MODEL_DIR
from dse.errors import DSEError

__all__ = ["FORMATS", "LITERT_MODULES", "check_deploy_request"]

FORMATS = ("onnx", "torchscript", "litert")
LITERT_MODULES = ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")


def check_deploy_request(export_dir: Path, *, format: str, lengths: list[int] | None,  # noqa: A002 - the CLI option's name
                         max_rows: int | None) -> Path:
    """The export's model folder, or one ``DSEError`` line saying what is wrong with the request."""
    if format not in FORMATS:
        raise DSEError(f"unknown deploy format {format!r} (choose from {', '.join(FORMATS)})")
    needs = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "litert": LITERT_MODULES}.get(format, ())
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing and format == "onnx":
        raise DSEError(f"--format onnx needs {', '.join(missing)}: pip install edgebert-dse (they are dependencies)")
    if missing:
        raise DSEError(f"--format litert needs the litert extra (missing {', '.join(missing)}): "
                       "pip install 'edgebert-dse[litert]'")
    if lengths is not None and format != "litert":
        raise DSEError("--lengths applies to --format litert only")
    if max_rows is not None and max_rows < 1:
        raise DSEError("--max-rows must be at least 1")
    if not export_dir.is_dir():
        raise DSEError(f"{export_dir}: no such export folder")
    model_dir = export_dir / MODEL_DIR
    if not (model_dir / "config.json").is_file():
        raise DSEError(f"{export_dir}: not a design export folder (no {MODEL_DIR}/config.json; "
                       "write one with dse export)")
    return model_dir

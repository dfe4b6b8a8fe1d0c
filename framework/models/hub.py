"""Hugging Face models and tokenizers from a local folder or the hub cache, with one-line refusals.

Where a name is looked for. An existing folder is read as is. Anything else is a hub id
(``owner/name``) looked up in the local hub cache (``HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``); it is downloaded only when neither ``HF_HUB_OFFLINE`` nor
``TRANSFORMERS_OFFLINE`` is set. A name found nowhere is one line, not a network traceback.

What is read. ``config.json`` first (plain JSON): a folder that does not describe a causal
language model is refused before any weight is loaded. Weights load with ``weights_only`` (the
transformers default, passed explicitly) and never with ``trust_remote_code``: no file of the
folder runs code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from framework.errors import ConfigError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
LLM_EXTRA_HINT = "pip install 'secateurs[llm]'"


def require_transformers(what: str) -> Any:
    """The ``transformers`` module, or one line naming the extra that brings it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            f"{what} needs transformers, which is not installed; install it with: {LLM_EXTRA_HINT}"
        ) from None
    return transformers


def offline() -> bool:
    """Whether the user switched the hub off (either variable set to a true value)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_VARIABLES)


def resolve_folder(name_or_path: str, key: str) -> Path:
    """The local folder of ``name_or_path``: the folder itself (a run folder: its ``language_model/``),
    or the hub snapshot (cached, or downloaded when the hub is not switched off)."""
    path = Path(os.path.expanduser(str(name_or_path)))
    if path.is_dir():
        saved = path / "language_model"  # a run folder (task=oneshot or train): the model it saved
        if not (path / "config.json").is_file() and (saved / "config.json").is_file():
            return saved
        return path
    if path.exists():
        raise ConfigError(
            f"{key}={name_or_path} is a file; allowed: a model folder (config.json + weights) or a hub id"
        )
    require_transformers(key)
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE

    where = f"not a folder, and not in the Hugging Face cache ({HF_HUB_CACHE})"
    try:
        return Path(snapshot_download(str(name_or_path), local_files_only=True))
    except Exception:
        if offline():
            switches = " / ".join(OFFLINE_VARIABLES)
            raise ConfigError(f"{key}={name_or_path} is {where}; {switches} is set, so nothing is downloaded") from None
    try:
        return Path(snapshot_download(str(name_or_path)))
    except Exception as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{key}={name_or_path} is {where}, and the download failed: {reason}") from None


def read_config_json(folder: Path, key: str) -> dict[str, Any]:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{key}={folder} has no config.json; allowed: a folder written by save_pretrained")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{key}={folder}: config.json is not readable JSON ({type(error).__name__})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{key}={folder}: config.json is not a JSON object")
    return config


def check_causal_lm_config(config: dict[str, Any], folder: Path, key: str) -> None:
    """One line unless ``config.json`` describes a model ``AutoModelForCausalLM`` builds as is."""
    require_transformers(key)
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    causal_classes = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or (
        architectures and not any(name in causal_classes for name in architectures)
    ):
        described = f"model_type={model_type!r}, architectures={architectures}"
        raise ConfigError(
            f"{key}={folder} is not a causal language model ({described}); allowed: a folder whose config.json "
            "describes a ...ForCausalLM (or GPT2LMHeadModel-style) model"
        )


def load_causal_lm(name_or_path: str, key: str = "model.pretrained", dtype: Any = None):
    """``AutoModelForCausalLM.from_pretrained`` of a checked folder or cached hub id."""
    require_transformers(key)
    folder = resolve_folder(name_or_path, key)
    check_causal_lm_config(read_config_json(folder, key), folder, key)
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=False, weights_only=True)
    except (OSError, ValueError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{key}={name_or_path}: the weights cannot be loaded ({reason})") from None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(name_or_path: str, key: str = "dataset.tokenizer"):
    """``AutoTokenizer.from_pretrained`` of a folder or cached hub id (no remote code)."""
    require_transformers(key)
    folder = resolve_folder(name_or_path, key)
    if not has_tokenizer(folder):
        raise ConfigError(
            f"{key}={name_or_path} holds no tokenizer ({', '.join(TOKENIZER_FILES)}); allowed: byte or a tokenizer folder"
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{key}={name_or_path}: the tokenizer cannot be loaded ({reason})") from None

"""Where the libraries keep downloaded weights, and whether a run may download at all.

torchvision keeps its files in torch hub's cache (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``); timm keeps them in the Hugging Face hub cache (``$HF_HUB_CACHE``,
else ``$HF_HOME/hub``, by default ``~/.cache/huggingface/hub``). Both are read from the environment at
the moment a model is built (not when a library was imported), so a test or a job script that sets
them before the run is obeyed.

Offline: the Hugging Face hub's switch ``HF_HUB_OFFLINE=1`` (or the older ``TRANSFORMERS_OFFLINE=1``).
torchvision has no switch of its own: a file already in its cache is used without a network call,
and under ``HF_HUB_OFFLINE=1`` a missing one is refused instead of downloaded, so one variable makes
a whole run offline.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

# What huggingface_hub reads as "on" in its boolean variables.
TRUE_VALUES = ("1", "on", "yes", "true")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> bool:
    """True when the environment forbids downloads (``HF_HUB_OFFLINE=1`` or ``TRANSFORMERS_OFFLINE=1``)."""
    return any(os.environ.get(name, "").strip().lower() in TRUE_VALUES for name in OFFLINE_VARIABLES)


def offline_switch() -> str:
    """The variable that made this run offline, as a person would write it."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in TRUE_VALUES:
            return f"{name}={os.environ[name]}"
    return "online"


def torch_hub_checkpoints() -> Path:
    """torch hub's folder of weight files (torchvision's weights and timm's few URL-only ones)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def torch_hub_file(url: str) -> Path:
    """Where torch hub stores the file it downloads from ``url`` (its base name, in the cache)."""
    return torch_hub_checkpoints() / os.path.basename(urlparse(url).path)


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, resolved as huggingface_hub does, from today's environment."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hf_repo_folder(repo_id: str) -> Path:
    """The cache folder of one model repository (``models--timm--resnet18.a1_in1k``)."""
    return hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))

"""Weights files put where torchvision and timm look for them, as their downloads would leave them.

torchvision: torch hub's cache, ``$TORCH_HOME/hub/checkpoints/<base name of weights.url>`` (torch hub
checks the hash in the name only while downloading; a cached file is read as it is). timm: the
Hugging Face hub cache, ``$HF_HOME/hub/models--timm--<repo>/snapshots/<commit>/model.safetensors``
with ``refs/main`` naming the commit, which is how huggingface_hub finds the file of ``main`` offline.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch

# A commit hash as the hub writes them (40 hex digits); any value works offline.
COMMIT = "5d3d6a3f0c2b8e1e4c1f0d2a9b8c7d6e5f4a3b2c"


def place_torchvision_weights(torch_home: Path, weights, state_dict: dict[str, torch.Tensor]) -> Path:
    file = torch_home / "hub" / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, file)
    return file


def place_timm_weights(hf_home: Path, name: str, state_dict: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file
    from timm.models import get_pretrained_cfg

    repo = get_pretrained_cfg(name).hf_hub_id
    folder = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(COMMIT)
    file = snapshot / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, file)
    return file

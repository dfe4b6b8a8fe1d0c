"""Any timm model by name (``model=timm``), randomly initialised or with timm's pretrained weights.

``name`` is a timm architecture (``efficientnet_b0``) or one of its weights (``resnet18.a1_in1k``: the
architecture and a pretrained tag); ``pretrained=true`` loads the weights that name (the
architecture's default tag when none is given). The file is looked up in the Hugging Face hub
cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``) first, then downloaded there unless the run is offline
(``HF_HUB_OFFLINE=1``); timm reads it as safetensors or with ``weights_only``. timm replaces the
classifier when the dataset's class count differs and adapts the first convolution to the dataset's
channels. timm is an optional dependency (``pip install 'secateurs[timm]'``), imported only here.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from framework.data.image_transforms import ImageTransforms
from framework.errors import CheckpointError, ConfigError, short_reason
from framework.models.torchvision_models import check_model_name
from framework.models.weights_cache import hf_hub_cache, hf_repo_folder, offline, offline_switch, torch_hub_file

log = logging.getLogger(__name__)

EXTRA = "timm"
# The files a timm repository on the hub holds its weights in, safest first (timm's own order).
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def require_timm(needed_by: str = "model=timm"):
    """Import timm, or one line naming the extra that brings it."""
    if importlib.util.find_spec("timm") is None:
        raise ConfigError(
            f"{needed_by} needs timm, which is not installed; install the '{EXTRA}' extra: "
            f"pip install 'secateurs[{EXTRA}]'"
        )
    import timm

    return timm


def check_timm_name(name: str) -> None:
    """The architecture must be one timm knows (a ``.tag`` after it names weights, checked later)."""
    timm = require_timm()
    architecture = str(name).split(".", 1)[0]
    check_model_name(architecture, timm.list_models(), "timm", "timm.list_models()")


def pretrained_config(name: str) -> Any:
    """timm's pretrained config of ``name`` (the default tag when none is given); one line when
    the model has no weights or the tag is not one of them."""
    timm = require_timm()
    from timm.models import get_pretrained_cfg

    architecture, _, tag = str(name).partition(".")
    tags = timm.list_pretrained(f"{architecture}.*")
    if not tags:
        raise ConfigError(
            f"model.name={name} model.pretrained=true: timm has no pretrained weights for {architecture}; "
            "allowed: model.pretrained=false (random) or a model with weights (timm.list_pretrained())"
        )
    if tag and name not in tags:
        raise ConfigError(
            f"model.name={name}: {tag!r} are not weights of timm's {architecture}; allowed: {', '.join(tags[:8])}"
            + (f" (+{len(tags) - 8} more)" if len(tags) > 8 else "")
        )
    config = get_pretrained_cfg(name)
    if config is None:  # a tag timm lists but cannot describe: timm's own registry is inconsistent
        raise ConfigError(f"model.name={name}: timm gives no pretrained config for it; pick another tag")
    return config


def cached_hub_file(repo_id: str, files: tuple[str, ...]) -> Path | None:
    """The first of ``files`` already in the hub cache for ``repo_id`` (any snapshot of ``main``)."""
    from huggingface_hub import try_to_load_from_cache

    for file in files:
        found = try_to_load_from_cache(repo_id, file, cache_dir=str(hf_hub_cache()))
        if isinstance(found, str):
            return Path(found)
    return None


def download_hub_file(name: str, repo_id: str, files: tuple[str, ...]) -> Path:
    """Download the first of ``files`` the repository has into the hub cache; one line when none can be."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    reason = "no such file in the repository"
    for file in files:
        try:
            return Path(hf_hub_download(repo_id, file, cache_dir=str(hf_hub_cache())))
        except EntryNotFoundError:
            continue
        except Exception as error:  # network, authentication, disk
            reason = short_reason(error)
            break
    raise CheckpointError(
        f"model.name={name} model.pretrained=true: {' or '.join(files)} of {repo_id} could not be downloaded "
        f"into {hf_repo_folder(repo_id)} ({reason}); put the file there (huggingface-cli download {repo_id}) "
        "or check the network"
    )


def weights_file(name: str, config: Any) -> Path:
    """The local file of the weights ``config`` describes: from the cache, or downloaded into it."""
    if config.hf_hub_id:
        repo_id = config.hf_hub_id.split("@", 1)[0]
        files = (config.hf_hub_filename,) if config.hf_hub_filename else HUB_FILES
        found = cached_hub_file(repo_id, files)
        if found is not None:
            return found
        if offline():
            raise CheckpointError(
                f"model.name={name} model.pretrained=true: {' or '.join(files)} of {repo_id} is not in the Hugging "
                f"Face hub cache and the run is offline ({offline_switch()}); put it in "
                f"{hf_repo_folder(repo_id)} (huggingface-cli download {repo_id}) or run online once"
            )
        return download_hub_file(name, repo_id, files)
    if config.url:  # older weights published at a URL only: torch hub's cache, as torchvision's
        cached = torch_hub_file(config.url)
        if cached.is_file():
            return cached
        if offline():
            raise CheckpointError(
                f"model.name={name} model.pretrained=true: {cached.name} is not in torch hub's cache and the run is "
                f"offline ({offline_switch()}); put it in {cached.parent} (downloaded from {config.url})"
            )
        import torch.hub

        try:
            torch.hub.download_url_to_file(config.url, str(cached))
        except Exception as error:
            raise CheckpointError(
                f"model.name={name} model.pretrained=true: {cached.name} could not be downloaded from {config.url} "
                f"into {cached.parent} ({short_reason(error)}); put the file there or check the network"
            ) from None
        return cached
    raise ConfigError(f"model.name={name}: timm's pretrained config names no file to load; pick another tag")


@contextmanager
def quiet_timm() -> Iterator[None]:
    """timm logs each step of loading weights at INFO; the run says what matters in its own line."""
    logger = logging.getLogger("timm")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def timm_model(name: str = "resnet18", pretrained: bool = False, num_classes: int = 1000, in_channels: int = 3):
    """``timm.create_model(name, pretrained=..., num_classes=..., in_chans=...)``."""
    timm = require_timm()
    check_timm_name(name)
    if not pretrained:
        if "." in str(name):
            raise ConfigError(
                f"model.name={name} names pretrained weights but model.pretrained=false; allowed: "
                f"model.pretrained=true, or model.name={str(name).split('.', 1)[0]} for a random start"
            )
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    config = pretrained_config(name)
    file = weights_file(name, config)
    try:
        with quiet_timm():
            model = timm.create_model(
                name,
                pretrained=True,
                pretrained_cfg_overlay={"file": str(file)},
                num_classes=num_classes,
                in_chans=in_channels,
            )
    except Exception as error:
        raise CheckpointError(
            f"model.name={name} model.pretrained=true: the weights file {file} cannot be loaded "
            f"({short_reason(error)}); delete it so that it is downloaded again"
        ) from None
    if config.num_classes and config.num_classes != num_classes:
        log.info(
            "model.name=%s: the weights were trained on %d classes, the dataset has %d: the classifier %s is "
            "replaced by a new, randomly initialised one (%d outputs)",
            name,
            config.num_classes,
            num_classes,
            config.classifier,
            num_classes,
        )
    return model


def timm_weights_transforms(name: str) -> ImageTransforms:
    """The evaluation preprocessing timm's pretrained config of ``name`` declares."""
    config = pretrained_config(name)
    crop = int(config.input_size[-1])
    resize = math.floor(crop / (config.crop_pct or 1.0))  # timm's own rounding (transforms_factory)
    interpolation = config.interpolation if config.interpolation in ("nearest", "bilinear", "bicubic") else "bilinear"
    mean, std = tuple(float(v) for v in config.mean), tuple(float(v) for v in config.std)
    return ImageTransforms(
        crop, resize, mean, std, interpolation, described_as=f"timm {config.architecture}.{config.tag}"
    )

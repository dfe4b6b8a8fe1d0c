"""Any torchvision classification model by name, randomly initialised or with torchvision's weights.

``weights``: null (random), ``DEFAULT`` (torchvision's best for the model) or an enum member
(``IMAGENET1K_V1``; ``ResNet50_Weights.IMAGENET1K_V1`` is accepted too). The file comes from torch
hub's cache (``$TORCH_HOME/hub/checkpoints``) and is downloaded there when it is missing, unless
the run is offline (:mod:`.weights_cache`). torchvision loads it with ``weights_only`` forced on,
so the file cannot run code. A dataset with another class count gets a new classifier
(:mod:`.classifier`). torchvision is imported only when such a model is built.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from framework.data.image_transforms import ImageTransforms
from framework.errors import CheckpointError, ConfigError, short_reason
from framework.models.classifier import replace_classifier
from framework.models.weights_cache import offline, offline_switch, torch_hub_file

log = logging.getLogger(__name__)

# How many names an error message shows.
SHOWN_NAMES = 5


def classification_model_names() -> list[str]:
    """Names torchvision registers for ImageNet-style classification (not detection, video...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_model_name(name: str, allowed: list[str], library: str, listing: str) -> None:
    """One line for a name the library does not know, with the closest names it does."""
    if name in allowed:
        return
    close = difflib.get_close_matches(str(name), allowed, n=SHOWN_NAMES, cutoff=0.5)
    close = close or [n for n in allowed if n.startswith(str(name)[:3])][:SHOWN_NAMES]
    hint = f"closest: {', '.join(close)}" if close else f"e.g. {', '.join(allowed[:SHOWN_NAMES])}"
    raise ConfigError(
        f"model.name={name!r} is not a {library} classification model; {hint} ({len(allowed)} in all: {listing})"
    )


def resolve_weights(name: str, weights: str) -> Any:
    """The torchvision weights enum member that ``weights`` names for model ``name``; one line when
    it names none of the model's."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    member = str(weights)
    prefix = f"{enum.__name__}."
    if member.startswith(prefix):
        member = member[len(prefix) :]
    if member in enum.__members__:
        return enum[member]
    allowed = ", ".join(list(enum.__members__))
    raise ConfigError(
        f"model.weights={weights!r} are not weights of torchvision's {name}; allowed: {allowed} (or null: random)"
    )


def weights_file_ready(name: str, weights: Any) -> None:
    """The weights' file is in torch hub's cache, or the run may download it; one line otherwise."""
    cached = torch_hub_file(weights.url)
    if cached.is_file():
        return
    if offline():
        raise CheckpointError(
            f"model.name={name} model.weights={weights.name}: the file {cached.name} is not in torch hub's "
            f"cache and the run is offline ({offline_switch()}); put it in {cached.parent} "
            f"(downloaded from {weights.url}) or run online once"
        )


@contextmanager
def weights_only_loading() -> Iterator[None]:
    """torch.load refuses anything but tensors while torchvision reads its weights file (torchvision
    itself asks torch hub for an unrestricted load)."""
    previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous


def load_with_weights(name: str, weights: Any) -> nn.Module:
    """torchvision's model with its weights; a file that cannot be fetched or read is one line."""
    import torchvision

    weights_file_ready(name, weights)
    cached = torch_hub_file(weights.url)
    try:
        with weights_only_loading():
            return torchvision.models.get_model(name, weights=weights)
    except Exception as error:
        if not cached.is_file():
            raise CheckpointError(
                f"model.name={name} model.weights={weights.name}: {cached.name} could not be downloaded from "
                f"{weights.url} into {cached.parent} ({short_reason(error)}); put the file there or check the network"
            ) from None
        raise CheckpointError(
            f"model.name={name} model.weights={weights.name}: the cached file {cached} cannot be loaded "
            f"({short_reason(error)}); delete it so that it is downloaded again"
        ) from None


def torchvision_model(
    name: str = "resnet18", num_classes: int = 1000, in_channels: int = 3, weights: str | None = None
) -> nn.Module:
    """``torchvision.models.get_model(name, weights=...)`` with ``num_classes`` outputs."""
    import torchvision

    check_model_name(
        name, classification_model_names(), "torchvision", "torchvision.models.list_models(module=torchvision.models)"
    )
    # Every torchvision classifier starts with an RGB convolution; a grey-scale dataset would
    # otherwise only fail at the first forward pass with a shape error.
    if in_channels != 3:
        raise ConfigError(
            f"torchvision model {name} expects 3 input channels; the dataset gives {in_channels}; "
            "use an RGB dataset (cifar10, imagefolder, synthetic with 3 channels) or another model (model=timm "
            "adapts its first convolution)"
        )
    if weights is None:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    resolved = resolve_weights(name, weights)
    model = load_with_weights(name, resolved)
    trained_classes = len(resolved.meta["categories"])
    if trained_classes != num_classes:
        replaced = replace_classifier(model, trained_classes, num_classes)
        log.info(
            "model.weights=%s were trained on %d classes, the dataset has %d: the classifier %s is replaced by a new, "
            "randomly initialised %s",
            resolved.name,
            trained_classes,
            num_classes,
            replaced.old,
            replaced.new,
        )
    return model


def torchvision_weights_transforms(name: str, weights: str) -> ImageTransforms:
    """The evaluation preprocessing torchvision's ``weights`` declare (``weights.transforms()``)."""
    resolved = resolve_weights(name, weights)
    preset = resolved.transforms()
    crop, resize = preset.crop_size[0], preset.resize_size[0]
    mean, std = tuple(preset.mean), tuple(preset.std)
    interpolation = preset.interpolation.value
    return ImageTransforms(
        crop, resize, mean, std, interpolation, described_as=f"torchvision {type(resolved).__name__}.{resolved.name}"
    )

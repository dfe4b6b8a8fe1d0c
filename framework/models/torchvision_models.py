"""Any torchvision classification model, by name, always randomly initialised.

Weights are never requested from torchvision (``weights=None``): runs must not download anything.
Start from trained weights with ``pretrained=<path>`` instead, which loads a local file.
"""

from __future__ import annotations

import torchvision
from torch import nn

from framework.errors import ConfigError


def classification_model_names() -> list[str]:
    """Names torchvision registers for ImageNet-style classification (not detection, video...)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_torchvision_model(
    torchvision_name: str | None, num_classes: int, input_shape: tuple[int, int, int]
) -> nn.Module:
    """``torchvision.models.<torchvision_name>(weights=None, num_classes=num_classes)``."""
    allowed = classification_model_names()
    if torchvision_name not in allowed:
        raise ConfigError(
            "unknown torchvision classification model "
            f"model.torchvision_name={torchvision_name!r}; allowed: {', '.join(allowed)}"
        )
    # Every torchvision classifier starts with an RGB convolution; a grey-scale dataset would
    # otherwise only fail at the first forward pass with a shape error.
    if input_shape[0] != 3:
        raise ConfigError(
            f"torchvision model {torchvision_name} expects 3 input channels; the dataset gives "
            f"input_shape={tuple(input_shape)}; use an RGB dataset (cifar10, imagefolder, "
            "synthetic with 3 channels) or another model"
        )
    return torchvision.models.get_model(torchvision_name, weights=None, num_classes=num_classes)

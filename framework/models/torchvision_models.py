"""Any torchvision classification model, by name, always randomly initialised.

Weights are never requested from torchvision (``weights=None``): runs must not download anything.
Start from trained weights with ``pretrained=<path>`` instead, which loads a local file.
torchvision is imported only when such a model is built.
"""

from __future__ import annotations

from torch import nn

from framework.errors import ConfigError

# How many names an error message shows before pointing at the full list.
SHOWN_NAMES = 12


def classification_model_names() -> list[str]:
    """Names torchvision registers for ImageNet-style classification (not detection, video...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(name: str = "resnet18", num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=num_classes)``."""
    import torchvision

    allowed = classification_model_names()
    if name not in allowed:
        close = [n for n in allowed if n.startswith(str(name)[:4])][:SHOWN_NAMES] or allowed[:SHOWN_NAMES]
        raise ConfigError(
            f"name={name!r} is not a torchvision classification model; allowed: {', '.join(close)}, ... "
            f"({len(allowed)} in all: torchvision.models.list_models(module=torchvision.models))"
        )
    # Every torchvision classifier starts with an RGB convolution; a grey-scale dataset would
    # otherwise only fail at the first forward pass with a shape error.
    if in_channels != 3:
        raise ConfigError(
            f"torchvision model {name} expects 3 input channels; the dataset gives {in_channels}; "
            "use an RGB dataset (cifar10, imagefolder, synthetic with 3 channels) or another model"
        )
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)

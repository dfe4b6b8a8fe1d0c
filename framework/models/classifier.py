"""A pretrained model's classifier swapped for one with the dataset's class count.

The classifier is the last layer (in module order) that produces the weights' class count: a
``Linear`` (resnet's ``fc``, vgg's ``classifier.6``, vit's ``heads.head``) or a ``Conv2d`` that
maps features to classes (squeezenet's ``classifier.1``). It is replaced by a fresh layer of the
same kind and inputs, initialised as PyTorch initialises a new layer (under the run's seed).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from framework.errors import ConfigError


@dataclass(frozen=True)
class Replaced:
    name: str
    old: str  # "fc (Linear 512 -> 1000)"
    new: str  # "Linear 512 -> 10"


def _describe(layer: nn.Module) -> str:
    if isinstance(layer, nn.Linear):
        return f"Linear {layer.in_features} -> {layer.out_features}"
    assert isinstance(layer, nn.Conv2d)
    return f"Conv2d {layer.in_channels} -> {layer.out_channels}"


def _outputs(layer: nn.Module) -> int | None:
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels
    return None


def _fresh(layer: nn.Module, num_classes: int) -> nn.Module:
    if isinstance(layer, nn.Linear):
        return nn.Linear(layer.in_features, num_classes, bias=layer.bias is not None)
    assert isinstance(layer, nn.Conv2d)
    return nn.Conv2d(
        layer.in_channels,
        num_classes,
        layer.kernel_size,  # type: ignore[arg-type]  # a tuple of ints, as Conv2d takes it
        stride=layer.stride,  # type: ignore[arg-type]
        padding=layer.padding,  # type: ignore[arg-type]
        bias=layer.bias is not None,
    )


def replace_classifier(model: nn.Module, trained_classes: int, num_classes: int) -> Replaced:
    """Swap the last layer giving ``trained_classes`` outputs for one giving ``num_classes``."""
    found = [name for name, layer in model.named_modules() if _outputs(layer) == trained_classes]
    if not found:
        raise ConfigError(
            f"{type(model).__name__}: no Linear or Conv2d layer gives the weights' {trained_classes} classes, so "
            f"the classifier cannot be replaced for the dataset's {num_classes}; use a dataset of {trained_classes} "
            "classes or model.weights=null"
        )
    name = found[-1]
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = parent.get_submodule(attribute)
    new = _fresh(old, num_classes)
    setattr(parent, attribute, new)
    return Replaced(name, f"{name} ({_describe(old)})", _describe(new))

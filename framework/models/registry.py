"""``build_model``: the model registry, from plain arguments (mapped from the Hydra config)."""

from __future__ import annotations

import os
from collections.abc import Callable

from torch import nn

from framework.errors import ConfigError
from framework.models.cifar_resnet import CifarResNet
from framework.models.pretrained import load_pretrained
from framework.models.simple_cnn import SimpleCNN
from framework.models.torchvision_models import build_torchvision_model
from framework.models.vgg import VGG


# Every builder takes the same arguments (num_classes, input_shape, depth, width,
# torchvision_name, shortcut) and reads the ones that apply to it.


def _simple_cnn(num_classes, input_shape, depth, width, torchvision_name, shortcut):
    """simple_cnn: any C x H x W input."""
    return SimpleCNN(num_classes, in_channels=input_shape[0], width=width)


def _cifar_resnet(default_depth: int | None) -> Callable[..., nn.Module]:
    """Builder for ``resnet<depth>`` (depth fixed by the name) or ``resnet`` (depth required)."""

    def build(num_classes, input_shape, depth, width, torchvision_name, shortcut):
        if default_depth is not None and depth is not None and depth != default_depth:
            raise ConfigError(
                f"model resnet{default_depth} has depth {default_depth}; got model.depth={depth}; "
                "leave it unset or use model.name=resnet with the depth you want"
            )
        chosen = default_depth if default_depth is not None else depth
        if chosen is None:
            raise ConfigError(
                "model resnet needs model.depth; got None; allowed: 6n+2 such as 20, 32, 44, 56"
            )
        return CifarResNet(chosen, num_classes, input_shape[0], width=width, shortcut=shortcut)

    return build


def _vgg16(num_classes, input_shape, depth, width, torchvision_name, shortcut):
    """vgg16: pools skipped where the input is too small for five halvings."""
    return VGG(num_classes, input_shape[0], input_size=tuple(input_shape[1:]), width=width)


def _torchvision(num_classes, input_shape, depth, width, torchvision_name, shortcut):
    """torchvision: the architecture named by ``torchvision_name``, unscaled."""
    if width != 1.0:
        raise ConfigError(
            f"model torchvision does not scale widths; got model.width={width}; allowed: 1.0"
        )
    return build_torchvision_model(torchvision_name, num_classes, input_shape)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "simple_cnn": _simple_cnn,
    "resnet20": _cifar_resnet(20),
    "resnet32": _cifar_resnet(32),
    "resnet44": _cifar_resnet(44),
    "resnet56": _cifar_resnet(56),
    "resnet": _cifar_resnet(None),
    "vgg16": _vgg16,
    "torchvision": _torchvision,
}
MODEL_NAMES = tuple(MODELS)


def check_input_shape(input_shape: object) -> tuple[int, int, int]:
    """``input_shape`` as a ``(C, H, W)`` tuple of positive ints, or a ConfigError."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if shape is None or len(shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ConfigError(
            f"input_shape must be three positive integers (C, H, W); got {input_shape!r}"
        )
    return shape


def build_model(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    depth: int | None = None,
    width: float = 1.0,
    pretrained: str | os.PathLike | None = None,
    torchvision_name: str | None = None,
    shortcut: str = "A",
) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes and ``(C, H, W)`` inputs.

    ``width`` multiplies every layer's channel count (not for ``torchvision``). ``depth`` is
    read by ``resnet`` (and must agree with ``resnet20``...``resnet56`` if given), ``shortcut``
    (``"A"`` zero-padding, the default, or ``"B"`` projection) by the CIFAR ResNets, and
    ``torchvision_name`` by ``torchvision``. With ``pretrained``, the weights in that file are
    loaded before the model is returned.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model model.name={name!r}; allowed: {', '.join(MODEL_NAMES)}")
    shape = check_input_shape(input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer; got {num_classes!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ConfigError(f"model.width must be a positive number; got {width!r}")
    model = MODELS[name](num_classes, shape, depth, float(width), torchvision_name, shortcut)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model

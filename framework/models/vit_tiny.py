"""``vit_tiny``: torchvision's VisionTransformer sized for small images (8x8 digits by default).

torchvision's ``VisionTransformer`` reads 3-plane images; :class:`VitTiny` is the same class with a
patch embedding for ``in_channels`` planes, so everything written for torchvision's ViT (the
dependency graph, head pruning, thinning, ONNX export) applies to it unchanged. Its image size
comes from the dataset's ``input_shape``. No BatchNorm: ``fold_batchnorm`` has nothing to fold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from framework.errors import ConfigError


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model.{name}={value!r} is invalid; allowed: an integer >= 1")


class VitTiny(VisionTransformer):
    """A ViT of ``num_layers`` encoder blocks, ``num_heads`` heads over ``hidden_dim`` features, MLP
    width ``mlp_dim``, on ``patch_size`` x ``patch_size`` patches of an ``in_channels``-plane image."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_shape: Sequence[int] | None = None,
        patch_size: int = 2,
        num_layers: int = 4,
        num_heads: int = 4,
        hidden_dim: int = 64,
        mlp_dim: int = 128,
        dropout: float = 0.0,
    ) -> None:
        for name, value in (
            ("patch_size", patch_size),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
            ("hidden_dim", hidden_dim),
            ("mlp_dim", mlp_dim),
        ):
            _check_positive(name, value)
        if hidden_dim % num_heads:
            raise ConfigError(
                f"model.hidden_dim={hidden_dim} is not divisible by model.num_heads={num_heads}; "
                "allowed: a hidden_dim that is a multiple of num_heads"
            )
        image_size = int(input_shape[-1]) if input_shape else 8
        if input_shape and int(input_shape[-2]) != image_size:
            raise ConfigError(f"vit_tiny needs square images; the dataset gives {tuple(input_shape)}")
        if image_size % patch_size:
            raise ConfigError(
                f"model.patch_size={patch_size} does not divide the image size {image_size}; "
                "allowed: a divisor of the image size"
            )
        super().__init__(
            image_size=image_size,
            patch_size=patch_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            mlp_dim=mlp_dim,
            dropout=dropout,
            num_classes=num_classes,
        )
        self.conv_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
        # the initialisation torchvision gives its own patch embedding
        fan_in = in_channels * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        assert self.conv_proj.bias is not None  # built with bias=True above
        nn.init.zeros_(self.conv_proj.bias)

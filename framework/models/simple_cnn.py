"""``simple_cnn``: a small Conv-BN-ReLU network, the default model for the digits dataset.

It is deliberately built from the layer types pruning cares about: every convolution is followed
by a BatchNorm (so BN folding and BN-scaled channel ranking have something to act on) and the
channel counts are large enough that removing filters changes the cost measurably.
"""

from __future__ import annotations

from torch import Tensor, nn

from framework.errors import ConfigError

# Base widths of the three blocks; ``width`` scales them.
BASE_WIDTHS = (32, 64, 128)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """A 3x3 convolution (no bias: the BatchNorm's shift replaces it), BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def check_width(width: float) -> None:
    """A width multiplier must be a positive number; one line otherwise."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ConfigError(f"width={width!r} is invalid; allowed: a number > 0 (1.0 = the base widths)")


def scaled(width: int, multiplier: float) -> int:
    """``width`` scaled by ``multiplier``, rounded, and never below one channel."""
    return max(1, int(round(width * multiplier)))


class SimpleCNN(nn.Module):
    """Three Conv-BN-ReLU blocks, a 2x2 max-pool after the second, global average pooling, Linear.

    Works for any ``C x H x W`` input with ``H, W >= 2`` (the pool halves them once); the global
    average pool makes the classifier independent of the image size.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        check_width(width)
        w1, w2, w3 = (scaled(w, width) for w in BASE_WIDTHS)
        self.block1 = conv_bn_relu(in_channels, w1)
        self.block2 = conv_bn_relu(w1, w2)
        self.pool = nn.MaxPool2d(2)
        self.block3 = conv_bn_relu(w2, w3)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(w3, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block1(x)
        x = self.pool(self.block2(x))
        x = self.block3(x)
        x = self.avgpool(x).flatten(1)
        return self.classifier(x)

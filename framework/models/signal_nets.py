"""Models for 1-D signals ``(C, L)`` such as MNIST-1D: a Conv1d convnet and an MLP.

``Conv1dNet`` is built from the layer types pruning cares about, in one dimension: every
``Conv1d`` is followed by a ``BatchNorm1d`` (BN folding and BN-scaled ranking act on it) and a
ReLU; the strided convolutions halve the length, a global average pool makes the classifier
independent of it. ``MLP`` flattens the signal; with no hidden layer it is logistic regression,
MNIST-1D's weakest published baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from framework.errors import ConfigError
from framework.models.simple_cnn import check_width, scaled

# (channels, kernel, stride) of each block; ``width`` scales the channels.
CONV1D_BLOCKS = ((32, 5, 1), (64, 3, 2), (64, 3, 2), (128, 3, 2))


def conv1d_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    """A convolution without bias (the BatchNorm's shift replaces it), BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm1d(out_channels),
        nn.ReLU(inplace=True),
    )


class Conv1dNet(nn.Module):
    """Four Conv1d-BatchNorm1d-ReLU blocks (the last three strided by 2), global average pooling
    and a linear classifier: about 45 k parameters at ``width=1``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        check_width(width)
        blocks, channels = [], in_channels
        for out_channels, kernel, stride in CONV1D_BLOCKS:
            blocks.append(conv1d_bn_relu(channels, scaled(out_channels, width), kernel, stride))
            channels = scaled(out_channels, width)
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


class MLP(nn.Module):
    """Flatten, then ``hidden`` Linear-ReLU layers and a linear classifier (``hidden=[]``:
    logistic regression)."""

    def __init__(
        self, num_classes: int = 10, input_shape: Sequence[int] = (1, 40), hidden: Sequence[int] = (100, 100)
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
            raise ConfigError(f"hidden={hidden!r} is invalid; allowed: a list of layer widths >= 1 ([] = logistic)")
        features = 1
        for size in input_shape:
            features *= int(size)
        layers: list[nn.Module] = [nn.Flatten()]
        for size in hidden:
            layers += [nn.Linear(features, size), nn.ReLU(inplace=True)]
            features = size
        layers.append(nn.Linear(features, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

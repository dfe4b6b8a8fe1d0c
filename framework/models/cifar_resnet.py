"""CIFAR ResNets (He et al., 2016, section 4.2): ResNet-20/32/44/56 and any depth ``6n + 2``.

Three stages of ``n`` BasicBlocks with 16, 32 and 64 channels (scaled by ``width``), the first
convolution keeping the 32x32 resolution and each later stage halving it.

Shortcuts where the shape changes (first block of stages 2 and 3):

- ``"A"`` (default, as in the paper's CIFAR experiments): identity on a stride-2 subsample, with
  the extra channels zero-padded. Parameter-free, so ResNet-20 has the paper's 0.27M parameters.
  The padding goes after the existing channels, so input channel ``i`` feeds output channel ``i``:
  the simplest index mapping for channel pruning across the residual add.
- ``"B"``: 1x1 convolution with stride 2 followed by BatchNorm (a projection).

Everything is written as modules without control flow on tensor values, so ``torch.fx`` can trace
the graph (BatchNorm folding needs that).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from framework.errors import ConfigError
from framework.models.simple_cnn import check_width

SHORTCUTS = ("A", "B")
STAGE_WIDTHS = (16, 32, 64)


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample spatially by ``stride``, then zero-pad the missing channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad lists pads from the last dimension backwards: (W, W, H, H, C_before, C_after).
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Option-B shortcut: strided 1x1 convolution and BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 Conv-BN layers with a residual connection; ReLU after the second add.

    Each ReLU is its own module (not a shared one, not ``F.relu``) so activation hooks see every
    site separately.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = projection_shortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: stem conv, three stages of BasicBlocks, global pool, Linear."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        width: float = 1.0,
        shortcut: str = "A",
    ) -> None:
        super().__init__()
        check_width(width)
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ConfigError(
                f"CIFAR ResNet depth must be 6n+2 with n >= 1; got depth={depth}; "
                "allowed: 8, 14, 20, 32, 44, 56, 110, ..."
            )
        if shortcut not in SHORTCUTS:
            raise ConfigError(
                f"unknown ResNet shortcut={shortcut!r}; allowed: "
                "'A' (zero-padding identity) or 'B' (1x1 conv projection)"
            )
        blocks_per_stage = (depth - 2) // 6
        widths = [max(1, int(round(w * width))) for w in STAGE_WIDTHS]
        self.depth = depth
        self.shortcut_option = shortcut

        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        in_width = widths[0]
        stages = []
        for stage_index, out_width in enumerate(widths):
            blocks = []
            for block_index in range(blocks_per_stage):
                stride = 2 if stage_index > 0 and block_index == 0 else 1
                blocks.append(BasicBlock(in_width, out_width, stride, shortcut))
                in_width = out_width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_width, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He (Kaiming) normal initialisation for convolutions, as in the paper."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x).flatten(1)
        return self.fc(x)

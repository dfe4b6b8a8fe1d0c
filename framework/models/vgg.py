"""VGG-16 with BatchNorm for CIFAR-sized inputs (the variant used in most pruning papers).

Thirteen 3x3 Conv-BN-ReLU layers (64 to 512 channels) in five groups, each followed by a 2x2
max-pool, then a small classifier 512 -> 512 -> classes instead of ImageNet's 4096-wide one: at
32x32 the features are already 1x1x512 after the fifth pool.
"""

from __future__ import annotations

from torch import Tensor, nn

from framework.models.simple_cnn import check_width

# Channel counts, "M" for a 2x2 max-pool.
VGG16_LAYERS: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


class VGG(nn.Module):
    """VGG feature extractor (Conv-BN-ReLU layers and max-pools), global pool, two Linear layers.

    A max-pool is left out where the feature map is already 1 pixel high or wide (inputs smaller
    than 32x32, such as 8x8 digits); that is decided from ``input_shape`` (C, H, W) at construction, so the
    graph stays free of data-dependent control flow.
    """

    def __init__(
        self,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        width: float = 1.0,
        layers: tuple[int | str, ...] = VGG16_LAYERS,
    ) -> None:
        super().__init__()
        check_width(width)
        features: list[nn.Module] = []
        channels, height, width_px = (int(s) for s in input_shape)
        for item in layers:
            if item == "M":
                if height >= 2 and width_px >= 2:
                    features.append(nn.MaxPool2d(2))
                    height, width_px = height // 2, width_px // 2
                continue
            out_channels = max(1, int(round(int(item) * width)))
            features += [
                nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            channels = out_channels
        self.features = nn.Sequential(*features)
        # Identity at 32x32; makes larger inputs work without resizing the classifier.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = max(1, int(round(512 * width)))
        self.classifier = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x)).flatten(1)
        return self.classifier(x)

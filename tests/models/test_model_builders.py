"""Model classes: output shapes, parameter counts, width scaling and argument errors."""

import pytest
import torch
from torch import nn

from framework.errors import ConfigError
from framework.models import VGG, CifarResNet, SimpleCNN, torchvision_model
from framework.models.cifar_resnet import PadShortcut


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(name, num_classes, input_shape, **extra):
    """The model the config option ``name`` names, built as the runner builds it."""
    if name == "simple_cnn":
        return SimpleCNN(num_classes, input_shape[0], **extra)
    if name.startswith("resnet"):
        depth = int(name[6:]) if name[6:] else extra.pop("depth")
        return CifarResNet(depth, num_classes, input_shape[0], **extra)
    if name == "vgg16":
        return VGG(num_classes, tuple(input_shape), **extra)
    return torchvision_model(extra.pop("torchvision_name"), num_classes, input_shape[0])


@pytest.mark.parametrize(
    "name, input_shape, extra",
    [
        ("simple_cnn", (1, 8, 8), {}),
        ("simple_cnn", (3, 32, 32), {}),
        ("resnet20", (3, 32, 32), {}),
        # Deeper nets on 16x16: the global pool makes the output shape size-independent, and
        # smaller inputs keep the test fast.
        ("resnet32", (3, 16, 16), {}),
        ("resnet44", (3, 16, 16), {}),
        ("resnet56", (3, 16, 16), {}),
        ("resnet", (3, 32, 32), {"depth": 8, "shortcut": "B"}),
        ("resnet20", (1, 8, 8), {}),
        ("vgg16", (3, 32, 32), {}),
        ("vgg16", (1, 8, 8), {}),
        ("torchvision", (3, 32, 32), {"torchvision_name": "resnet18"}),
    ],
)
def test_output_shape(name, input_shape, extra):
    torch.manual_seed(0)
    model = build(name, num_classes=7, input_shape=input_shape, **extra).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *input_shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "name, millions",
    [("resnet20", 0.27), ("resnet32", 0.46), ("resnet44", 0.66), ("resnet56", 0.85)],
)
def test_cifar_resnet_parameter_counts_match_the_paper(name, millions):
    # He et al. 2016, table 6 (option A shortcuts, 10 classes).
    model = build(name, num_classes=10, input_shape=(3, 32, 32))
    assert round(params(model) / 1e6, 2) == millions


def test_resnet20_option_a_exact_count_and_option_b_adds_projections():
    a = build("resnet20", num_classes=10, input_shape=(3, 32, 32))
    b = build("resnet20", num_classes=10, input_shape=(3, 32, 32), shortcut="B")
    # stem 432+32, stage 1 13,824+192, stage 2 50,688+384, stage 3 202,752+768, fc 650.
    assert params(a) == 269_722
    # Two projections: 16->32 and 32->64 (1x1 conv + BN weight and bias each).
    assert params(b) - params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert sum(isinstance(m, PadShortcut) for m in a.modules()) == 2
    assert not any(isinstance(m, PadShortcut) for m in b.modules())


def test_option_a_shortcut_subsamples_and_zero_pads_after_existing_channels():
    x = torch.randn(2, 4, 6, 6)
    out = PadShortcut(4, 10, stride=2)(x)
    assert out.shape == (2, 10, 3, 3)
    assert torch.equal(out[:, :4], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 4:]) == 0


def test_width_scales_simple_cnn_channels():
    model = build("simple_cnn", num_classes=10, input_shape=(1, 8, 8), width=0.5)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [16, 32, 64]
    # Every convolution feeds a BatchNorm, which is what BN folding and channel ranking need.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3


def test_vgg16_has_thirteen_conv_bn_layers_from_64_to_512():
    model = build("vgg16", num_classes=10, input_shape=(3, 32, 32))
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5


def test_torchvision_model_is_randomly_initialised_with_dataset_classes():
    model = torchvision_model("resnet18", num_classes=3)
    assert model.fc.out_features == 3


def one_line_config_error(build_it) -> str:
    with pytest.raises(ConfigError) as info:
        build_it()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_torchvision_name_is_short_and_names_the_argument():
    message = one_line_config_error(lambda: torchvision_model("resnet7", num_classes=10))
    assert "name='resnet7'" in message and "resnet18" in message
    assert len(message) < 400


def test_torchvision_model_refuses_grey_scale_input():
    message = one_line_config_error(lambda: torchvision_model("resnet18", num_classes=10, in_channels=1))
    assert "gives 1" in message and "3 input channels" in message


@pytest.mark.parametrize(
    "build_it, expected",
    [
        (lambda: CifarResNet(21), "depth=21"),
        (lambda: CifarResNet(20, shortcut="C"), "shortcut='C'"),
        (lambda: SimpleCNN(width=0), "width=0 is invalid"),
        (lambda: VGG(width=-1.0), "width=-1.0 is invalid"),
    ],
)
def test_bad_model_arguments(build_it, expected):
    assert expected in one_line_config_error(build_it)

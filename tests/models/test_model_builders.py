"""build_model: output shapes, parameter counts, width scaling and configuration errors."""

import pytest
import torch
from torch import nn

from framework.errors import ConfigError
from framework.models import MODEL_NAMES, build_model
from framework.models.cifar_resnet import PadShortcut


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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
    model = build_model(name, num_classes=7, input_shape=input_shape, **extra).eval()
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
    model = build_model(name, num_classes=10, input_shape=(3, 32, 32))
    assert round(params(model) / 1e6, 2) == millions


def test_resnet20_option_a_exact_count_and_option_b_adds_projections():
    a = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32))
    b = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32), shortcut="B")
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
    model = build_model("simple_cnn", num_classes=10, input_shape=(1, 8, 8), width=0.5)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [16, 32, 64]
    # Every convolution feeds a BatchNorm, which is what BN folding and channel ranking need.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3


def test_vgg16_has_thirteen_conv_bn_layers_from_64_to_512():
    model = build_model("vgg16", num_classes=10, input_shape=(3, 32, 32))
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5


def test_torchvision_model_is_randomly_initialised_with_dataset_classes():
    model = build_model(
        "torchvision", num_classes=3, input_shape=(3, 32, 32), torchvision_name="resnet18"
    )
    assert model.fc.out_features == 3


def one_line_config_error(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        build_model(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_model_lists_allowed_names():
    message = one_line_config_error(name="alexnet9", num_classes=10, input_shape=(3, 32, 32))
    assert "'alexnet9'" in message and "model.name" in message
    for allowed in MODEL_NAMES:
        assert allowed in message


def test_unknown_torchvision_name():
    message = one_line_config_error(
        name="torchvision", num_classes=10, input_shape=(3, 32, 32), torchvision_name="resnet7"
    )
    assert "model.torchvision_name='resnet7'" in message and "resnet18" in message


def test_torchvision_model_refuses_grey_scale_input():
    message = one_line_config_error(
        name="torchvision", num_classes=10, input_shape=(1, 8, 8), torchvision_name="resnet18"
    )
    assert "(1, 8, 8)" in message and "3 input channels" in message


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"name": "resnet", "depth": 21}, "model.depth=21"),
        ({"name": "resnet"}, "model.depth"),
        ({"name": "resnet20", "depth": 32}, "model.depth=32"),
        ({"name": "resnet20", "shortcut": "C"}, "model.shortcut='C'"),
        ({"name": "simple_cnn", "width": 0}, "model.width must be a positive number; got 0"),
        ({"name": "torchvision", "torchvision_name": "resnet18", "width": 2.0}, "model.width=2.0"),
    ],
)
def test_bad_model_options(kwargs, expected):
    message = one_line_config_error(num_classes=10, input_shape=(3, 32, 32), **kwargs)
    assert expected in message


def test_bad_input_shape():
    message = one_line_config_error(name="simple_cnn", num_classes=10, input_shape=(8, 8))
    assert "input_shape" in message and "(8, 8)" in message

"""Models by name with their libraries' weights, from caches the tests fill themselves (offline)."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision
from hub_cache import place_timm_weights, place_torchvision_weights
from PIL import Image

from framework.data.image_transforms import ImageTransforms
from framework.data.imagefolder import imagefolder_transforms
from framework.errors import CheckpointError, ConfigError
from framework.models import timm_model, torchvision_model, weights_transforms


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches of this test, and no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def one_line(error_type, build_it) -> str:
    with pytest.raises(error_type) as info:
        build_it()
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "name, classifier, kind",
    [("mobilenet_v3_small", "classifier.3", "Linear 1024 -> "), ("squeezenet1_1", "classifier.1", "Conv2d 512 -> ")],
)
def test_torchvision_weights_come_from_the_cache_and_the_classifier_is_replaced(caches, caplog, name, classifier, kind):
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    torch.manual_seed(1)
    trained = torchvision.models.get_model(name).state_dict()
    place_torchvision_weights(caches / "torch", weights, trained)

    same_classes = torchvision_model(name, num_classes=1000, weights="DEFAULT")
    assert all(torch.equal(value, trained[key]) for key, value in same_classes.state_dict().items())

    with caplog.at_level(logging.INFO, logger="framework.models"):
        model = torchvision_model(name, num_classes=7, weights=f"{type(weights).__name__}.IMAGENET1K_V1")
    state = model.state_dict()
    replaced = {key for key in state if key.startswith(classifier + ".")}
    assert {tuple(state[key].shape)[0] for key in replaced} == {7}
    assert all(torch.equal(value, trained[key]) for key, value in state.items() if key not in replaced)
    [said] = [r.getMessage() for r in caplog.records if "classifier" in r.getMessage()]
    assert f"the classifier {classifier} ({kind}1000) is replaced by a new, randomly initialised {kind}7" in said


def test_a_torchvision_weights_file_missing_offline_names_model_file_and_folder(caches):
    message = one_line(CheckpointError, lambda: torchvision_model("squeezenet1_1", num_classes=10, weights="DEFAULT"))
    assert message.startswith(
        "model.name=squeezenet1_1 model.weights=IMAGENET1K_V1: the file squeezenet1_1-b8a52dc0.pth"
    )
    assert f"offline (HF_HUB_OFFLINE=1); put it in {caches / 'torch' / 'hub' / 'checkpoints'} " in message


class NotATensor:  # what a weights file must never be able to make torch.load build
    pass


def test_a_cached_torchvision_file_is_read_weights_only(caches):
    weights = torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1
    file = place_torchvision_weights(caches / "torch", weights, {"features.0.weight": NotATensor()})
    message = one_line(CheckpointError, lambda: torchvision_model("squeezenet1_1", num_classes=10, weights="DEFAULT"))
    assert f"the cached file {file} cannot be loaded (WeightsUnpickler error:" in message
    assert message.endswith("delete it so that it is downloaded again")


@pytest.mark.parametrize(
    "build_it, expected",
    [
        (
            lambda: torchvision_model("resnet50x", num_classes=10),
            "model.name='resnet50x' is not a torchvision classification model; closest: resnet50,",
        ),
        (
            lambda: torchvision_model("resnet18", num_classes=10, weights="IMAGENET1K_V2"),
            "model.weights='IMAGENET1K_V2' are not weights of torchvision's resnet18; allowed: IMAGENET1K_V1, DEFAULT",
        ),
        (
            lambda: torchvision_model("resnet18", num_classes=10, weights="ResNet50_Weights.IMAGENET1K_V1"),
            "model.weights='ResNet50_Weights.IMAGENET1K_V1' are not weights of torchvision's resnet18",
        ),
        (
            lambda: timm_model("efficentnet_b0", num_classes=10),
            "model.name='efficentnet_b0' is not a timm classification model; closest: efficientnet_b0,",
        ),
        (
            lambda: timm_model("efficientnet_b0_gn", pretrained=True, num_classes=10),
            "model.name=efficientnet_b0_gn model.pretrained=true: timm has no pretrained weights for efficientnet_b0_gn",
        ),
        (
            lambda: timm_model("resnet18.imagenet_v9", pretrained=True, num_classes=10),
            "model.name=resnet18.imagenet_v9: 'imagenet_v9' are not weights of timm's resnet18; allowed: resnet18.a1_in1k",
        ),
        (
            lambda: timm_model("resnet18.a1_in1k", pretrained=False, num_classes=10),
            "model.name=resnet18.a1_in1k names pretrained weights but model.pretrained=false",
        ),
    ],
)
def test_names_and_weights_that_do_not_exist_are_one_line(caches, build_it, expected):
    assert expected in one_line(ConfigError, build_it)


TIMM_NAME = "mobilenetv3_small_050"


def test_timm_weights_come_from_the_hub_cache_adapted_to_channels_and_classes(caches, caplog):
    import timm

    torch.manual_seed(2)
    trained = timm.create_model(TIMM_NAME).state_dict()
    place_timm_weights(caches / "hf", TIMM_NAME, trained)

    same = timm_model(TIMM_NAME, pretrained=True, num_classes=1000)
    assert all(torch.equal(value, trained[key]) for key, value in same.state_dict().items())

    with caplog.at_level(logging.INFO, logger="framework.models"):
        model = timm_model(TIMM_NAME, pretrained=True, num_classes=4, in_channels=1)
    state = model.state_dict()
    assert state["classifier.weight"].shape == (4, 1024)
    # timm sums the RGB filters of the first convolution for one input channel
    assert torch.allclose(state["conv_stem.weight"], trained["conv_stem.weight"].sum(1, keepdim=True))
    assert torch.equal(state["blocks.0.0.conv_dw.weight"], trained["blocks.0.0.conv_dw.weight"])
    [said] = [r.getMessage() for r in caplog.records if "classifier" in r.getMessage()]
    assert "trained on 1000 classes, the dataset has 4: the classifier classifier is replaced" in said


def test_timm_weights_missing_offline_name_the_repository_folder(caches):
    message = one_line(CheckpointError, lambda: timm_model(TIMM_NAME, pretrained=True, num_classes=10))
    folder = caches / "hf" / "hub" / "models--timm--mobilenetv3_small_050.lamb_in1k"
    assert message.startswith(f"model.name={TIMM_NAME} model.pretrained=true: model.safetensors or pytorch_model.bin")
    assert f"offline (HF_HUB_OFFLINE=1); put it in {folder} " in message


def picture(size=(57, 41)) -> Image.Image:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def test_the_weights_preprocessing_is_the_libraries_own():
    import timm

    image = picture()
    torchvision_spec = weights_transforms(
        {"_target_": "framework.models.torchvision_model", "name": "resnet50", "weights": "IMAGENET1K_V2"}
    )
    assert (torchvision_spec.crop_size, torchvision_spec.resize_size) == (224, 232)
    _, ours = imagefolder_transforms(torchvision_spec, augment=False)
    reference = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.transforms()
    assert torch.allclose(ours(image), reference(image), atol=1e-6)

    timm_spec = weights_transforms({"_target_": "framework.models.timm_model", "name": TIMM_NAME, "pretrained": True})
    assert timm_spec.interpolation == "bicubic"
    _, ours = imagefolder_transforms(timm_spec, augment=False)
    config = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(TIMM_NAME).to_dict())
    assert torch.allclose(ours(image), timm.data.create_transform(**config)(image), atol=1e-6)

    assert weights_transforms({"_target_": "framework.models.torchvision_model", "name": "resnet50"}) is None
    assert weights_transforms({"_target_": "framework.models.SimpleCNN"}) is None


def test_imagefolder_follows_the_weights_when_asked(tmp_path):
    from framework.data import ImageFolder

    weights = ImageTransforms(160, 182, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bicubic", "some weights")
    assert ImageFolder(tmp_path, weights_transforms=weights).input_shape == (3, 160, 160)  # auto
    assert ImageFolder(tmp_path, transforms="dataset", weights_transforms=weights).spec.mean == (0.485, 0.456, 0.406)
    resized = ImageFolder(tmp_path, image_size=80, transforms="weights", weights_transforms=weights).spec
    assert (resized.crop_size, resized.resize_size, resized.interpolation) == (80, 91, "bicubic")
    assert ImageFolder(tmp_path).input_shape == (3, 224, 224)
    message = one_line(ConfigError, lambda: ImageFolder(tmp_path, transforms="weights"))
    assert message.startswith("dataset.transforms=weights but the model loads no weights that declare a preprocessing")


def test_a_run_whose_weights_are_missing_offline_stops_in_one_line_before_reading_data(
    caches, run_experiment, tmp_path
):
    # in-process: the CLI answers every CheckpointError with its line and exit 2 (tests/runner/test_checkpoint_fields.py runs one)
    images = tmp_path / "images"  # a tree that exists: its files would be read only after the model
    for split in ("train", "val"):
        (images / split / "a").mkdir(parents=True)
    run = [
        "model=torchvision",
        "model.weights=DEFAULT",
        "dataset=imagefolder",
        f"dataset.root={images}",
        "tracking=none",
    ]
    message = one_line(CheckpointError, lambda: run_experiment(run))
    assert message.endswith(
        "model.name=resnet18 model.weights=IMAGENET1K_V1: the file resnet18-f37072fd.pth is not in torch hub's "
        f"cache and the run is offline (HF_HUB_OFFLINE=1); put it in {caches / 'torch' / 'hub' / 'checkpoints'} "
        "(downloaded from https://download.pytorch.org/models/resnet18-f37072fd.pth) or run online once"
    ), message
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_run_gives_imagefolder_the_preprocessing_of_the_models_weights(compose_config, tmp_path):
    from framework.runner.parts import build_data_source

    for split in ("train", "val"):
        (tmp_path / split / "a").mkdir(parents=True)
    tree = ["dataset=imagefolder", f"dataset.root={tmp_path}", "model=torchvision", "model.name=resnet50"]
    source = build_data_source(compose_config([*tree, "model.weights=IMAGENET1K_V2"]))
    assert (source.spec.resize_size, source.input_shape) == (232, (3, 224, 224))
    assert source.spec.described_as == "torchvision ResNet50_Weights.IMAGENET1K_V2"
    own = build_data_source(compose_config([*tree, "model.weights=IMAGENET1K_V2", "dataset.transforms=dataset"]))
    assert own.spec.resize_size == 256
    assert build_data_source(compose_config(tree)).spec.described_as == "ImageNet statistics"

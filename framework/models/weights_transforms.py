"""The preprocessing a model config's pretrained weights declare, read before the model is built
so that the dataset's transforms can follow it (``dataset.transforms=auto|weights``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.data.image_transforms import ImageTransforms

TORCHVISION = "framework.models.torchvision_model"
TIMM = "framework.models.timm_model"


def weights_transforms(model: Mapping[str, Any]) -> ImageTransforms | None:
    """What the weights of the ``model`` config node expect, or None (random weights, or a model
    whose weights declare nothing: your own class, ``pretrained=<file>``)."""
    target = model.get("_target_")
    if target == TORCHVISION and model.get("weights") is not None:
        from framework.models.torchvision_models import torchvision_weights_transforms

        return torchvision_weights_transforms(str(model.get("name")), str(model["weights"]))
    if target == TIMM and model.get("pretrained"):
        from framework.models.timm_models import timm_weights_transforms

        return timm_weights_transforms(str(model.get("name")))
    return None

"""Model builders: simple_cnn (default), CIFAR ResNets, VGG-16, torchvision models, pretrained."""

from framework.models.pretrained import check_pretrained_file, load_pretrained
from framework.models.registry import MODEL_NAMES, build_model

__all__ = ["MODEL_NAMES", "build_model", "check_pretrained_file", "load_pretrained"]

"""Model classes with real signatures, used as config components (``_target_``).

``SimpleCNN`` (default), ``CifarResNet`` (ResNet-20 ... 56, shortcut A or B), ``VGG`` (VGG-16 with
BatchNorm), ``VitTiny`` (torchvision's ViT sized for small images), ``Conv1dNet`` and ``MLP`` (1-D
signals such as MNIST-1D), ``torchvision_model`` (any
torchvision classifier by name), and ``load_pretrained`` for
trained weights. The runner passes ``num_classes``, ``in_channels`` and ``input_shape`` (from the
dataset) to any model whose signature takes them.
"""

from framework.models.cifar_resnet import CifarResNet
from framework.models.pretrained import check_pretrained_file, load_pretrained
from framework.models.signal_nets import MLP, Conv1dNet
from framework.models.simple_cnn import SimpleCNN
from framework.models.torchvision_models import torchvision_model
from framework.models.vgg import VGG
from framework.models.vit_tiny import VitTiny

__all__ = [
    "CifarResNet",
    "Conv1dNet",
    "MLP",
    "SimpleCNN",
    "VGG",
    "VitTiny",
    "check_pretrained_file",
    "load_pretrained",
    "torchvision_model",
]

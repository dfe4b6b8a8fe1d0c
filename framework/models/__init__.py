"""Model classes with real signatures, used as config components (``_target_``).

``SimpleCNN`` (default), ``CifarResNet`` (ResNet-20 ... 56, shortcut A or B), ``VGG`` (VGG-16 with
BatchNorm), ``VitTiny`` (torchvision's ViT sized for small images), ``Conv1dNet`` and ``MLP`` (1-D
signals such as MNIST-1D), ``torchvision_model`` (any torchvision classifier by name, with
torchvision's weights), ``timm_model`` (any timm model by name, with timm's weights),
``weights_transforms`` (the preprocessing those weights declare), and ``load_pretrained`` for
trained weights of a file. The runner passes ``num_classes``, ``in_channels`` and ``input_shape`` (from the
dataset) to any model whose signature takes them.
"""

from framework.models.cifar_resnet import CifarResNet
from framework.models.pretrained import check_pretrained_file, load_pretrained
from framework.models.signal_nets import MLP, Conv1dNet
from framework.models.simple_cnn import SimpleCNN
from framework.models.timm_models import timm_model
from framework.models.torchvision_models import torchvision_model
from framework.models.vgg import VGG
from framework.models.vit_tiny import VitTiny
from framework.models.weights_transforms import weights_transforms

__all__ = [
    "CifarResNet",
    "Conv1dNet",
    "MLP",
    "SimpleCNN",
    "VGG",
    "VitTiny",
    "check_pretrained_file",
    "load_pretrained",
    "timm_model",
    "torchvision_model",
    "weights_transforms",
]

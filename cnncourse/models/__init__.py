"""The model zoo: one readable file per family, a class plus thin builder functions, and a registry.

Every builder takes keyword arguments ``num_classes`` and ``in_channels`` (and the small variants a
``width``), so any family trains on digits (1 channel) or malaria cells (3 channels)::

    from cnncourse.models import MODELS, resnet20
    net = resnet20(num_classes=2, width=8)
    for name, build in MODELS.items(): ...

The ImageNet builders (:data:`IMAGENET_MODELS`) have exactly torchvision's parameter counts where
torchvision has the model; the small ones (:data:`SMALL_MODELS`) are sized for 32x32 inputs. Each model has
a ``min_size`` attribute (smallest input side it runs on) and says what to do when an input is too small.
"""

from collections.abc import Callable

from torch import nn

from cnncourse.models.alexnet import AlexNet, alexnet, alexnet_2012, alexnet_cifar
from cnncourse.models.cellnet import cellnet
from cnncourse.models.common import ConvBNAct, he_init, scaled, smallest_input
from cnncourse.models.densenet import DenseBlock, DenseLayer, DenseNet, Transition, densenet121, densenet_cifar
from cnncourse.models.googlenet import GoogLeNet, InceptionAux, InceptionBlock, googlenet, googlenet_cifar
from cnncourse.models.lenet import LeNet5, lenet5, lenet5_modern
from cnncourse.models.mobilenet import (
    DepthwiseSeparableConv,
    InvertedResidual,
    MobileNetV1,
    MobileNetV2,
    SqueezeExcitation,
    make_divisible,
    mobilenet_v1,
    mobilenet_v2,
)
from cnncourse.models.nin import MLPConv, MLPConvSpec, NiN, nin, nin_cifar
from cnncourse.models.resnet import (
    BasicBlock,
    Bottleneck,
    CifarResNet,
    ResNet,
    ZeroPadShortcut,
    resnet18,
    resnet20,
    resnet34,
    resnet50,
    resnet56,
    resnext50_32x4d,
)
from cnncourse.models.vgg import (
    VGG,
    vgg11,
    vgg11_bn,
    vgg13,
    vgg13_bn,
    vgg16,
    vgg16_bn,
    vgg19,
    vgg19_bn,
    vgg_cifar,
)

# name -> builder. To add a model, add one line. The tests (tests/test_models*.py) loop over this dict and
# expect of every entry: keyword arguments num_classes and in_channels with defaults; a docstring stating
# "N parameters" (for the defaults) and "Inputs of SxS and up"; a model with attributes in_channels and
# min_size (common.smallest_input) whose forward calls common.check_input; every parameter in a leaf module.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": lenet5,
    "lenet5_modern": lenet5_modern,
    "alexnet": alexnet,
    "alexnet_2012": alexnet_2012,
    "alexnet_cifar": alexnet_cifar,
    "vgg11": vgg11,
    "vgg11_bn": vgg11_bn,
    "vgg13": vgg13,
    "vgg13_bn": vgg13_bn,
    "vgg16": vgg16,
    "vgg16_bn": vgg16_bn,
    "vgg19": vgg19,
    "vgg19_bn": vgg19_bn,
    "vgg_cifar": vgg_cifar,
    "nin": nin,
    "nin_cifar": nin_cifar,
    "googlenet": googlenet,
    "googlenet_cifar": googlenet_cifar,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnext50_32x4d": resnext50_32x4d,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "densenet121": densenet121,
    "densenet_cifar": densenet_cifar,
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "cellnet": cellnet,
}

# The ImageNet-size builders (224x224 inputs, 1000 classes by default) ...
IMAGENET_MODELS: tuple[str, ...] = (
    "alexnet", "alexnet_2012", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "nin", "googlenet", "resnet18", "resnet34", "resnet50", "resnext50_32x4d", "densenet121", "mobilenet_v1",
    "mobilenet_v2",
)
# ... and the small ones (32x32 inputs, 10 classes by default) that train on a CPU.
SMALL_MODELS: tuple[str, ...] = tuple(name for name in MODELS if name not in IMAGENET_MODELS)

__all__ = [
    "MODELS", "IMAGENET_MODELS", "SMALL_MODELS",
    # blocks
    "ConvBNAct", "InceptionBlock", "InceptionAux", "BasicBlock", "Bottleneck", "ZeroPadShortcut", "DenseLayer",
    "DenseBlock", "Transition", "DepthwiseSeparableConv", "InvertedResidual", "SqueezeExcitation", "MLPConv",
    "MLPConvSpec",
    # model classes
    "LeNet5", "AlexNet", "VGG", "NiN", "GoogLeNet", "ResNet", "CifarResNet", "DenseNet", "MobileNetV1", "MobileNetV2",
    # builders
    *MODELS,
    # helpers
    "he_init", "scaled", "smallest_input", "make_divisible",
]

"""cnncourse.models: parameter counts (against torchvision and by hand), output shapes, input checks.

Most models are built on the "meta" device: parameters and activations have shapes but no data, so even
VGG-19 builds and runs in milliseconds. A few small models also run for real on the CPU.
"""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

from cnncourse.models import (
    IMAGENET_MODELS,
    MODELS,
    SMALL_MODELS,
    AlexNet,
    BasicBlock,
    CifarResNet,
    GoogLeNet,
    LeNet5,
    ResNet,
    alexnet_2012,
    lenet5,
    mobilenet_v1,
    nin,
    nin_cifar,
    resnet20,
    resnet56,
    scaled,
)
from cnncourse.shapes import ShapeError, conv_params, layer_table

META = torch.device("meta")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(name: str, **kwargs) -> nn.Module:
    with META:
        return MODELS[name](**kwargs).eval()


def run(model: nn.Module, *shape: int) -> torch.Tensor:
    return model(torch.empty(*shape, device=META))


# ---------------------------------------------------------------------------------------------------
# Parameter counts

TORCHVISION = ["alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
               "googlenet", "resnet18", "resnet34", "resnet50", "resnext50_32x4d", "densenet121", "mobilenet_v2"]


def torchvision_model(name: str, **kwargs) -> nn.Module:
    extra = {"init_weights": False} if name == "googlenet" else {}
    with META:
        return getattr(torchvision.models, name)(weights=None, **extra, **kwargs)


@pytest.mark.parametrize("name", TORCHVISION)
@pytest.mark.parametrize("num_classes", [1000, 7])
def test_parameters_equal_torchvision(name, num_classes):
    kwargs = {"aux_logits": False} if name == "googlenet" else {}
    ours = build(name, num_classes=num_classes, **kwargs)
    assert n_params(ours) == n_params(torchvision_model(name, num_classes=num_classes, **kwargs))


@pytest.mark.parametrize("aux", [False, True])
def test_googlenet_parameters_with_and_without_aux_heads(aux):
    ours = build("googlenet", aux_logits=aux)
    assert n_params(ours) == n_params(torchvision_model("googlenet", aux_logits=aux))
    assert n_params(ours) == (13_004_888 if aux else 6_624_904)


@pytest.mark.parametrize("name, count", [
    ("alexnet", 61_100_840), ("vgg16", 138_357_544), ("vgg19", 143_667_240), ("resnet18", 11_689_512),
    ("resnet34", 21_797_672), ("resnet50", 25_557_032), ("resnext50_32x4d", 25_028_904),
    ("densenet121", 7_978_856), ("mobilenet_v2", 3_504_872),
])
def test_the_issue_counts(name, count):
    assert n_params(build(name)) == count


def test_lenet5_counts_by_hand():
    expected = conv_params(1, 6, 5) + conv_params(6, 16, 5) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert expected == 61_706
    assert n_params(MODELS["lenet5"]()) == n_params(MODELS["lenet5_modern"]()) == expected
    # On 28x28 (no padding) the maps end at 4x4, so fc1 has 16*4*4 inputs.
    assert n_params(lenet5(input_size=28)) == expected - (400 - 256) * 120


def mlpconv_params(in_channels: int, channels: list[int], kernel: int) -> int:
    total = conv_params(in_channels, channels[0], kernel)
    return total + sum(conv_params(a, b, 1) for a, b in zip(channels, channels[1:], strict=False))


def test_nin_counts_by_hand():
    c = 1000
    expected = (mlpconv_params(3, [96, 96, 96], 11) + mlpconv_params(96, [256, 256, 256], 5)
                + mlpconv_params(256, [384, 384, 384], 3) + mlpconv_params(384, [c, c, c], 3))
    assert n_params(nin()) == expected == 7_439_608
    small = (mlpconv_params(3, [192, 160, 96], 5) + mlpconv_params(96, [192, 192, 192], 5)
             + mlpconv_params(192, [192, 192, 10], 3))
    assert n_params(nin_cifar()) == small == 966_986


def test_mobilenet_v1_counts_by_hand():
    bn = 2  # a batch norm has a scale and a shift per channel
    expected = conv_params(3, 32, 3, bias=False) + bn * 32
    widths = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    for a, b in zip(widths, widths[1:], strict=False):
        expected += conv_params(a, a, 3, bias=False, groups=a) + bn * a + conv_params(a, b, 1, bias=False) + bn * b
    expected += 1024 * 1000 + 1000
    assert n_params(mobilenet_v1()) == expected == 4_231_976


def test_alexnet_2012_counts_by_hand():
    convs = (conv_params(3, 96, 11) + conv_params(96, 256, 5) + conv_params(256, 384, 3)
             + conv_params(384, 384, 3) + conv_params(384, 256, 3))
    fcs = (256 * 6 * 6 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert n_params(alexnet_2012()) == convs + fcs == 62_378_344


@pytest.mark.parametrize("depth", [20, 56])
@pytest.mark.parametrize("width", [16, 4])
def test_cifar_resnet_counts_by_hand(depth, width):
    n = (depth - 2) // 6
    expected = conv_params(3, width, 3, bias=False) + 2 * width
    c_in = width
    for c in (width, 2 * width, 4 * width):
        for _ in range(n):
            expected += conv_params(c_in, c, 3, bias=False) + conv_params(c, c, 3, bias=False) + 4 * c
            c_in = c
    expected += 4 * width * 10 + 10
    residual = CifarResNet(depth, width=width)
    assert n_params(residual) == n_params(CifarResNet(depth, width=width, plain=True)) == expected
    if width == 16:
        assert expected == {20: 269_722, 56: 853_018}[depth]


def test_builder_docstrings_state_the_true_counts_and_minimum_sizes():
    for name, builder in MODELS.items():
        doc = builder.__doc__ or ""
        stated = re.search(r"([\d,]{5,}) parameters", doc)
        assert stated, f"{name}'s docstring states no parameter count"
        model = build(name)
        assert int(stated.group(1).replace(",", "")) == n_params(model), name
        if not isinstance(model, LeNet5):
            size = re.search(r"[Ii]nputs of (\d+)x\1 and up", doc)
            assert size, f"{name}'s docstring states no minimum input size"
            assert int(size.group(1)) == model.min_size, name


# ---------------------------------------------------------------------------------------------------
# Shapes

def test_registry_lists_every_family():
    families = {type(build(name)).__name__ for name in MODELS}
    assert families >= {"LeNet5", "AlexNet", "VGG", "NiN", "GoogLeNet", "ResNet", "CifarResNet", "DenseNet",
                        "MobileNetV1", "MobileNetV2"}
    assert set(IMAGENET_MODELS) | set(SMALL_MODELS) == set(MODELS)
    assert not set(IMAGENET_MODELS) & set(SMALL_MODELS)


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_imagenet_output_shapes(name):
    for num_classes, in_channels, sizes in [(1000, 3, (224,)), (7, 1, (97, 0))]:
        model = build(name, num_classes=num_classes, in_channels=in_channels)
        for size in sizes:
            size = size or model.min_size
            assert run(model, 2, in_channels, size, size).shape == (2, num_classes), (size, num_classes)


@pytest.mark.parametrize("name", [n for n in SMALL_MODELS if not n.startswith("lenet")])
def test_small_output_shapes(name):
    """The small variants run on digits (8x8 upsampled to 28 or 32) and malaria cells (32 to 64 px)."""
    for num_classes, in_channels, sizes in [(10, 1, (0, 28, 32)), (2, 3, (45, 64))]:
        model = build(name, num_classes=num_classes, in_channels=in_channels)
        for size in sizes:
            size = max(size, model.min_size)
            assert run(model, 3, in_channels, size, size).shape == (3, num_classes), (size, num_classes)


@pytest.mark.parametrize("modern", [False, True])
@pytest.mark.parametrize("size", [16, 28, 32, 64])
def test_lenet_shapes(size, modern):
    model = LeNet5(num_classes=3, in_channels=1, input_size=size, modern=modern)
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 3)
    acts = {type(m) for m in model.modules()}
    assert (nn.ReLU in acts, nn.MaxPool2d in acts, nn.Tanh in acts, nn.AvgPool2d in acts) == \
        (modern, modern, not modern, not modern)


@pytest.mark.parametrize("name", ["alexnet_cifar", "vgg_cifar", "nin_cifar", "googlenet_cifar"])
def test_width_narrows_the_small_variants(name):
    narrow = build(name, width=0.25)
    assert n_params(narrow) < n_params(build(name)) / 8
    assert run(narrow, 2, 3, 32, 32).shape == (2, 10)


def test_scaled_rejects_a_bad_width():
    assert scaled(64, 0.25) == 16 and scaled(3, 0.1) == 1
    with pytest.raises(ValueError, match="width"):
        scaled(64, 0)


def test_googlenet_aux_heads_only_in_training():
    model = build("googlenet", aux_logits=True, num_classes=5)
    model.train()
    logits, aux1, aux2 = run(model, 2, 3, 224, 224)
    assert logits.shape == aux1.shape == aux2.shape == (2, 5)
    model.eval()
    assert run(model, 2, 3, 224, 224).shape == (2, 5)


def test_alexnet_2012_shape_walk_on_227():
    model = build("alexnet_2012")
    sizes = []
    x = torch.empty(1, 3, 227, 227, device=META)
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 13, 13), (384, 13, 13), (384, 13, 13),
                     (256, 13, 13), (256, 6, 6)]


@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_small_models_train_on_the_cpu(name):
    """One real forward and backward pass: every parameter gets a finite gradient."""
    torch.manual_seed(0)
    model = MODELS[name](num_classes=2, in_channels=1)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 32, 32)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_plain_and_residual_nets_share_weights_but_not_outputs():
    torch.manual_seed(0)
    residual, plain = resnet20(width=4).eval(), resnet20(width=4, plain=True).eval()
    plain.load_state_dict(residual.state_dict())  # same parameters, so the weights carry over
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(residual(x), plain(x))
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in resnet56().modules())


def test_plain_imagenet_resnet_has_no_projection_shortcuts():
    residual = build("resnet18")
    with META:
        plain = ResNet(BasicBlock, (2, 2, 2, 2), plain=True)
    projections = sum(conv_params(a, b, 1, bias=False) + 2 * b for a, b in [(64, 128), (128, 256), (256, 512)])
    assert n_params(plain) == n_params(residual) - projections
    assert run(plain, 1, 3, 64, 64).shape == (1, 1000)


# ---------------------------------------------------------------------------------------------------
# Input checks

@pytest.mark.parametrize("name", list(MODELS))
def test_minimum_input_size_is_exact_and_too_small_inputs_get_a_clear_error(name):
    model = build(name)
    c, size = model.in_channels, model.min_size
    assert run(model, 1, c, size, size).shape[0] == 1
    if isinstance(model, LeNet5) or size == 1:
        return
    with pytest.raises(ShapeError, match=rf"at least {size}x{size} pixels, got {size - 1}x{size + 3}.*interpolate"):
        run(model, 1, c, size - 1, size + 3)
    model.min_size = 1  # without the check, PyTorch itself fails one pixel below the stated minimum
    with pytest.raises(RuntimeError):
        run(model, 1, c, size - 1, size - 1)


@pytest.mark.parametrize("name", ["alexnet", "resnet20", "mobilenet_v2", "lenet5"])
def test_wrong_channels_or_rank_get_a_clear_error(name):
    model = build(name, in_channels=3)
    size = max(model.min_size, 32)
    with pytest.raises(ShapeError, match=r"in_channels=3 .* 1 channels.*in_channels=1"):
        run(model, 2, 1, size, size)
    with pytest.raises(ShapeError, match=r"\(N, C, H, W\).*unsqueeze"):
        run(model, 3, size, size)


def test_lenet_names_the_size_it_was_built_for():
    with pytest.raises(ShapeError, match=r"built for 32x32 inputs, got 28x28; build it with input_size=28"):
        lenet5()(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="input_size >= 16"):
        lenet5(input_size=14)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match=r"6n \+ 2"):
        CifarResNet(depth=21)
    with pytest.raises(ValueError, match="stem"):
        GoogLeNet(stem="tiny")
    with pytest.raises(ValueError, match="5 convolutions"):
        AlexNet(widths=(64, 64))
    assert resnet56(plain=True).plain


@pytest.mark.parametrize("name", ["googlenet_cifar", "mobilenet_v1", "mobilenet_v2"])
def test_stem_stride_trades_resolution_for_cost(name):
    costs = []
    for stride in (1, 2):
        model = build(name, num_classes=2, stem_stride=stride)
        assert run(model, 2, 3, 32, 32).shape == (2, 2)
        costs.append(layer_table(model, (1, 3, 32, 32), device=META).total_macs)
    assert costs[1] < costs[0] / 3

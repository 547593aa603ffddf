"""``cnncourse.shapes.layer_table`` on the model zoo: parameters and MACs agree with direct counts.

The MAC totals are checked on "meta" tensors (shapes only, no arithmetic), so every ImageNet builder is
checked at 224x224 in milliseconds; a few cheap models also run for real on the CPU.
``benchmarks/layer_table_models.py`` measures layer_table's CPU time for every ImageNet builder.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnncourse.models import IMAGENET_MODELS, MODELS, SMALL_MODELS
from cnncourse.shapes import layer_table

META = torch.device("meta")


def build(name: str, device: torch.device = META, **kwargs) -> nn.Module:
    with device:
        return MODELS[name](**kwargs)


def counted_macs(model: nn.Module, shape: tuple[int, ...], device: torch.device = META) -> int:
    """Multiply-adds of one forward pass as torch.utils.flop_counter counts them (FLOPs / 2)."""
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(shape, device=device))
    return counter.get_total_flops() // 2


def input_shape(name: str) -> tuple[int, int, int, int]:
    return (1, 3, 224, 224) if name in IMAGENET_MODELS else (1, 1 if name.startswith("lenet") else 3, 32, 32)


@pytest.mark.parametrize("name", list(MODELS))
def test_layer_table_parameters_equal_the_counted_parameters(name):
    model = build(name)
    table = layer_table(model, input_shape(name), device=META)
    counted = sum(p.numel() for p in model.parameters())
    assert table.total_params == counted
    assert sum(row.params for row in table.rows) == counted  # every parameter shows up in exactly one row


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_layer_table_macs_equal_flop_counter_at_224(name):
    model = build(name)
    table = layer_table(model, (1, 3, 224, 224), device=META)
    assert table.total_macs == counted_macs(model, (1, 3, 224, 224)) > 0
    if hasattr(torchvision.models, name):  # and the architecture costs what torchvision's does
        extra = {"init_weights": False} if name == "googlenet" else {}
        with META:
            reference = getattr(torchvision.models, name)(weights=None, **extra)
        assert table.total_macs == counted_macs(reference, (1, 3, 224, 224))


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_layer_table_macs_of_the_small_models(name):
    model = build(name)
    assert layer_table(model, input_shape(name), device=META).total_macs == counted_macs(model, input_shape(name))


@pytest.mark.parametrize("name", ["alexnet", "mobilenet_v2", "resnet18"])
def test_layer_table_on_the_cpu_matches_the_meta_count(name):
    torch.manual_seed(0)
    model = build(name, torch.device("cpu")).train()
    table = layer_table(model, (1, 3, 224, 224))
    assert table.total_macs == layer_table(build(name), (1, 3, 224, 224), device=META).total_macs
    assert model.training and next(model.parameters()).device.type == "cpu"


def test_vgg16_table_holds_the_known_totals():
    table = layer_table(build("vgg16"), (1, 3, 224, 224), device=META)
    assert table.total_params == 138_357_544
    assert table.total_macs == 15_470_264_320  # 15.5 G multiply-adds ("15.5 GFLOPs" on many slides)
    convs = [row for row in table.rows if row.type == "Conv2d"]
    assert len(convs) == 13 and convs[0].macs == 86_704_128 and convs[0].output_shape == (1, 64, 224, 224)

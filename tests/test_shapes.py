"""cnncourse.shapes: the formulas agree with what PyTorch layers really produce, and the slides' numbers."""

import dataclasses
import random

import pytest
import torch
import torchvision
from torch import nn

from cnncourse.shapes import (
    ShapeError,
    conv_macs,
    conv_output_size,
    conv_params,
    layer_table,
    pool_output_size,
    receptive_field,
)


def _random_conv_configs(n: int, seed: int):
    rng = random.Random(seed)
    configs = []
    while len(configs) < n:
        h, w = rng.randint(1, 40), rng.randint(1, 40)
        kh, kw = rng.randint(1, 7), rng.randint(1, 7)
        s = (rng.randint(1, 4), rng.randint(1, 4))
        p = (rng.randint(0, 3), rng.randint(0, 3))
        d = (rng.randint(1, 3), rng.randint(1, 3))
        if h + 2 * p[0] < d[0] * (kh - 1) + 1 or w + 2 * p[1] < d[1] * (kw - 1) + 1:
            continue
        configs.append(((h, w), (kh, kw), s, p, d))
    return configs


@pytest.mark.parametrize("config", _random_conv_configs(300, seed=0))
def test_conv_output_size_matches_conv2d(config):
    size, k, s, p, d = config
    conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d, bias=False)
    out = conv(torch.zeros(1, 1, *size)).shape[-2:]
    assert conv_output_size(size, k, s, p, d, strict=False) == tuple(out)
    tiles = all((size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) % s[i] == 0 for i in range(2))
    if tiles:
        assert conv_output_size(size, k, s, p, d) == tuple(out)
    else:
        with pytest.raises(ShapeError, match="not an integer"):
            conv_output_size(size, k, s, p, d)


def _random_pool_configs(n: int, seed: int):
    rng = random.Random(seed)
    configs = []
    while len(configs) < n:
        size = (rng.randint(1, 40), rng.randint(1, 40))
        k = (rng.randint(1, 6), rng.randint(1, 6))
        s = (rng.randint(1, 4), rng.randint(1, 4))
        p = (rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2))
        d = (rng.randint(1, 2), rng.randint(1, 2))
        # windows that overhang the input are kept: ceil mode accepts some of them, PyTorch rejects the rest
        configs.append((size, k, s, p, d, rng.random() < 0.5))
    return configs


@pytest.mark.parametrize("config", _random_pool_configs(300, seed=1))
def test_pool_output_size_matches_maxpool2d(config):
    size, k, s, p, d, ceil = config
    pool = nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    try:
        out = pool(torch.zeros(1, 1, *size)).shape[-2:]
    except RuntimeError:  # PyTorch: "Output size is too small"
        with pytest.raises(ShapeError, match="does not fit"):
            pool_output_size(size, k, s, p, d, ceil_mode=ceil)
        return
    assert pool_output_size(size, k, s, p, d, ceil_mode=ceil) == tuple(out)
    if d == (1, 1):
        avg = nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil)
        assert pool_output_size(size, k, s, p, ceil_mode=ceil) == tuple(avg(torch.zeros(1, 1, *size)).shape[-2:])


def test_seed_numbers_deck_000_and_003():
    assert conv_output_size(32, 5) == 28  # 3x32x32 image, 5x5 filter -> 28x28
    assert conv_output_size(7, 3, stride=2) == 3
    assert conv_output_size(7, 3, stride=1) == 5
    assert conv_output_size((7, 7), (3, 3), stride=2) == (3, 3)
    with pytest.raises(ShapeError) as err:
        conv_output_size(10, 3, stride=2, padding=0)  # "we cannot have W = 10, P = 0, F = 3 and S = 2"
    message = str(err.value)
    assert "(10 - 3 + 2*0)/2 + 1 = 4.5" in message
    assert "stride" in message and "strict=False" in message
    for stride in (1, 7):  # the strides it suggests really fit
        assert f"{stride}" in message and conv_output_size(10, 3, stride=stride) >= 1
    assert conv_output_size(10, 3, stride=2, strict=False) == 4  # PyTorch floors


def test_error_suggests_a_padding_that_fits():
    with pytest.raises(ShapeError, match=r"padding=1 \(gives 4\)"):
        conv_output_size(10, 3, stride=3)
    assert conv_output_size(10, 3, stride=3, padding=1) == 4


def test_pooling_examples():
    assert pool_output_size(4, 2) == 2  # the 4x4 example of deck 000
    assert pool_output_size(55, 3, 2) == 27  # AlexNet's overlapping pool
    assert pool_output_size(112, 3, 2, ceil_mode=True) == 56  # GoogLeNet: ceil keeps the size
    assert pool_output_size(112, 3, 2) == 55
    assert pool_output_size(2, 3, 2, ceil_mode=True) == 1  # a partial window that overhangs by one pixel


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: conv_output_size(-3, 3), ["size", "-3"]),
        (lambda: conv_output_size(5, 7), ["extent 7", "padding >= 1"]),
        (lambda: conv_output_size(5, 3, stride=0), ["stride", "0"]),
        (lambda: conv_output_size(5.0, 3), ["int", "5.0"]),
        (lambda: conv_output_size(5, (3, 3, 3)), ["pair", "(3, 3, 3)"]),
        (lambda: conv_output_size(True, 3), ["int", "True"]),
        (lambda: pool_output_size(5, 2, padding=2), ["padding=2", "padding <= 1"]),
        (lambda: pool_output_size(3, 5, padding=0), ["window", "kernel_size <= 3"]),
        (lambda: conv_params(3, 8, 3, groups=2), ["groups=2", "in_channels=3"]),
        (lambda: conv_params(0, 8, 3), ["in_channels", "0"]),
        (lambda: conv_macs(3, 8, 3, 0), ["output_size", "0"]),
        (lambda: receptive_field([(3,)]), ["layer 0", "(3,)"]),
        (lambda: receptive_field([(3, 1), (3, 0)]), ["layer 1 stride", "0"]),
        (lambda: layer_table(nn.Conv2d(3, 8, 3), (0, 3, 32, 32)), ["input_size", "batch", "(0, 3, 32, 32)"]),
        (lambda: layer_table(nn.Conv2d(3, 8, 3), (1, 4, 32, 32)), ["(1, 4, 32, 32)"]),
        (lambda: layer_table("vgg", (1, 3, 8, 8)), ["nn.Module", "str"]),
    ],
)
def test_bad_input_says_what_to_change(call, words):
    with pytest.raises(ShapeError) as err:
        call()
    for word in words:
        assert word in str(err.value)


def test_conv_params_and_macs_match_pytorch():
    for cin, cout, k, groups, bias in [(3, 96, 11, 1, True), (64, 64, 3, 64, True), (32, 64, (1, 7), 4, False)]:
        conv = nn.Conv2d(cin, cout, k, groups=groups, bias=bias)
        assert conv_params(cin, cout, k, groups=groups, bias=bias) == sum(p.numel() for p in conv.parameters())
    assert conv_params(3, 96, 11) == 11 * 11 * 3 * 96 + 96  # F^2 D1 K + K
    assert conv_macs(3, 64, 3, 224) == 224 * 224 * 64 * 3 * 3 * 3
    assert conv_macs(64, 64, 3, (10, 20), groups=64, batch=2) == 2 * 64 * 200 * 9


def test_receptive_field():
    assert receptive_field([(3, 1)] * 2) == 5
    assert receptive_field([(3, 1)] * 3) == 7
    assert receptive_field([(3, 1, 2)]) == 5  # dilation 2
    assert receptive_field([(3, 1), (2, 2), (3, 1)]) == 3 + 1 + 2 * 2
    assert receptive_field([]) == 1


def _measured_receptive_field(layers) -> int:
    """How many input pixels change the centre output of a 1-D stack: differentiate and count."""
    modules = [nn.Conv1d(1, 1, k, stride=s, dilation=d, bias=False) for k, s, d in layers]
    for m in modules:
        nn.init.constant_(m.weight, 1.0)
    x = torch.zeros(1, 1, 101, requires_grad=True)
    y = nn.Sequential(*modules)(x)
    y[0, 0, y.shape[-1] // 2].backward()
    return int((x.grad != 0).sum())


@pytest.mark.parametrize(
    "layers", [[(3, 1, 1)] * 3, [(5, 2, 1), (3, 1, 2), (3, 2, 1)], [(7, 2, 1), (3, 2, 1), (3, 1, 1)]]
)
def test_receptive_field_matches_gradient(layers):
    assert receptive_field(layers) == _measured_receptive_field(layers)


def lenet5(in_channels: int = 1) -> nn.Sequential:
    """LeNet-5 in its modern form (ReLU, max pooling) for 32x32 inputs."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def test_lenet5_table_deck_001():
    table = layer_table(lenet5(), (1, 1, 32, 32))
    assert table.total_params == 61_706
    expected = {  # deck 001: layer -> (shape, weight parameters)
        "0": ((6, 28, 28), 6 * 1 * 5 * 5),  # Conv1 (the slide's 6x3x5x5 is for RGB input, below)
        "2": ((6, 14, 14), 0),  # Pool1
        "3": ((16, 10, 10), 16 * 6 * 5 * 5),  # Conv2
        "5": ((16, 5, 5), 0),  # Pool2
        "7": ((120,), 120 * 16 * 5 * 5),  # FC1
        "9": ((84,), 84 * 120),  # FC2
        "11": ((10,), 10 * 84),  # FC3
    }
    for name, (shape, weights) in expected.items():
        assert table[name].output_shape == (1, *shape), name
        assert table[name].weight_params == weights, name
        assert table[name].bias_params == (shape[0] if weights else 0), name
    assert sum(r.params for r in table) == 61_706
    rgb = layer_table(lenet5(3), (1, 3, 32, 32))
    assert rgb["0"].weight_params == 6 * 3 * 5 * 5 and rgb.total_params == 62_006


def _vgg16_slide_table():
    """Deck 001's VGG16 table: (output shape (C, H, W), memory = elements, weight params)."""
    rows, c_in, size = [], 3, 224
    for channels, convs in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]:
        for _ in range(convs):
            rows.append(("conv", (channels, size, size), channels * size * size, 3 * 3 * c_in * channels))
            c_in = channels
        size //= 2
        rows.append(("pool", (channels, size, size), channels * size * size, 0))
    rows += [("fc", (4096,), 4096, 7 * 7 * 512 * 4096), ("fc", (4096,), 4096, 4096 * 4096),
             ("fc", (1000,), 1000, 4096 * 1000)]
    return rows


@pytest.fixture(scope="module")
def vgg16_table():
    torch.manual_seed(0)
    return layer_table(torchvision.models.vgg16(), (1, 3, 224, 224))


def test_vgg16_table_deck_001(vgg16_table):
    table = vgg16_table
    assert table.total_params == 138_357_544
    slide = _vgg16_slide_table()
    # the slide lists convs, pools and FCs; torchvision adds ReLU/Dropout (aliases) and an adaptive avgpool
    ours = [r for r in table.rows[1:] if r.type in ("Conv2d", "MaxPool2d", "Linear")]
    assert len(ours) == len(slide) == 21
    spot = {  # a few figures exactly as printed on the slide
        0: (224 * 224 * 64, 1_728), 1: (224 * 224 * 64, 36_864), 7: (56 * 56 * 256, 589_824),
        10: (28 * 28 * 512, 1_179_648), 18: (4096, 102_760_448), 19: (4096, 16_777_216), 20: (1000, 4_096_000),
    }
    for i, (row, (_, shape, memory, weights)) in enumerate(zip(ours, slide, strict=True)):
        assert row.output_shape == (1, *shape), row.name
        assert row.activations == memory, row.name
        assert row.weight_params == weights, row.name
        if i in spot:
            assert (row.activations, row.weight_params) == spot[i]
    assert table["input"].activations == 224 * 224 * 3  # "150K"
    # The slide says "TOTAL memory: 24M"; its own per-layer figures add up to about 15.2M values.
    slide_total = 224 * 224 * 3 + sum(memory for _, _, memory, _ in slide)
    assert slide_total == 15_237_608
    avgpool = table["avgpool"].activations  # torchvision's extra AdaptiveAvgPool2d output
    assert table.total_activations == slide_total + avgpool
    assert table.total_bytes == 4 * table.total_activations  # float32
    assert "138,357,544" in str(table) and "15,262,696" in str(table)
    assert "<table>" in table._repr_html_()


def test_flop_counter_agrees_with_formulas(vgg16_table):
    """MACs measured by torch.utils.flop_counter equal the hand formulas, layer by layer."""
    model = torchvision.models.vgg16()
    modules = dict(model.named_modules())
    for row in vgg16_table.rows[1:]:
        module = modules[row.name]
        if isinstance(module, nn.Conv2d):
            expected = conv_macs(module.in_channels, module.out_channels, module.kernel_size, row.output_shape[-2:],
                                 groups=module.groups)
        elif isinstance(module, nn.Linear):
            expected = module.in_features * module.out_features
        else:
            expected = 0
        assert row.macs == expected, row.name
    assert vgg16_table.total_macs == 15_470_264_320  # ~15.5 G MACs, the "15.5 GFLOPs" of the papers
    assert vgg16_table.total_flops == 2 * vgg16_table.total_macs


def test_layer_table_grouped_conv_and_batch():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16))
    table = layer_table(model, (4, 8, 10, 10))
    assert table["0"].macs == conv_macs(8, 8, 3, 10, groups=8, batch=4)
    assert table["1"].macs == conv_macs(8, 16, 1, 10, batch=4)
    assert table["2"].weight_params == 16 and table["2"].bias_params == 16
    assert table["2"].activations == 4 * 16 * 100
    assert model.training  # restored after the measurement


def test_layer_table_reused_module_counts_parameters_once():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    table = layer_table(model, (1, 4, 8, 8))
    assert [r.name for r in table][1:] == ["0", "1", "0#2"]
    assert sum(r.params for r in table) == table.total_params == conv_params(4, 4, 3)
    assert table["0#2"].macs == table["0"].macs > 0


def _small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 2))


def test_layer_table_puts_the_model_back_where_it_was():
    """Measured on another device, the model returns to its own device and every module to its own mode."""
    model = _small_cnn()
    model.train()
    model[1].eval()  # a frozen batch norm inside a training model keeps its eval mode
    weight = model[0].weight
    on_cpu = layer_table(model, (2, 3, 8, 8))
    on_meta = layer_table(model, (2, 3, 8, 8), device="meta")
    assert model[0].weight.device.type == "cpu" and model[1].running_mean.device.type == "cpu"
    assert model[0].weight is weight and model[0].weight.grad is None
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True, True]
    assert [dataclasses.astuple(r) for r in on_meta] == [dataclasses.astuple(r) for r in on_cpu]
    assert on_meta.total_bytes == on_cpu.total_bytes and on_cpu["2"].aliases_input and not on_cpu["0"].aliases_input


def test_layer_table_on_the_meta_device_leaves_a_meta_model_there():
    model = _small_cnn().to("meta")
    layer_table(model, (1, 3, 8, 8), device="meta")
    assert model[0].weight.is_meta


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_layer_table_on_cuda_returns_the_model_to_the_cpu():
    model = _small_cnn()
    table = layer_table(model, (1, 3, 8, 8), device="cuda")
    assert model[0].weight.device.type == "cpu" and table.total_macs > 0


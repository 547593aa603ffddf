"""The reusable blocks of cnncourse.models: what each one computes, not only its shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnncourse.models import (
    BasicBlock,
    Bottleneck,
    ConvBNAct,
    DenseBlock,
    DenseLayer,
    DepthwiseSeparableConv,
    InceptionBlock,
    InvertedResidual,
    MLPConv,
    SqueezeExcitation,
    ZeroPadShortcut,
    make_divisible,
    smallest_input,
)
from cnncourse.shapes import conv_macs, conv_params, layer_table


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("config", [
    (192, 64, 96, 128, 16, 32, 32),  # GoogLeNet 3a
    (480, 192, 96, 208, 16, 48, 64),  # 4a
    (8, 3, 2, 5, 1, 7, 4),
])
def test_inception_output_channels_add_up(config):
    in_channels, ch1x1, _, ch3x3, _, ch5x5, pool_proj = config
    block = InceptionBlock(*config).eval()
    x = torch.randn(2, in_channels, 9, 11)
    branches = [block.branch1(x), block.branch2(x), block.branch3(x), block.branch4(x)]
    assert [b.shape[1] for b in branches] == [ch1x1, ch3x3, ch5x5, pool_proj]
    out = block(x)
    assert out.shape == (2, ch1x1 + ch3x3 + ch5x5 + pool_proj, 9, 11) and block.out_channels == out.shape[1]
    assert torch.equal(out, torch.cat(branches, dim=1))


def test_naive_inception_passes_the_pooled_input_on():
    block = InceptionBlock.naive(6, 2, 3, 4, norm=False).eval()
    x = torch.randn(1, 6, 7, 7)
    out = block(x)
    assert out.shape == (1, 2 + 3 + 4 + 6, 7, 7) == (1, block.out_channels, 7, 7)
    assert torch.equal(out[:, 9:], F.max_pool2d(x, 3, 1, 1))
    assert {m.kernel_size for m in block.modules() if isinstance(m, nn.Conv2d)} == {(1, 1), (3, 3), (5, 5)}


def test_inception_cost_naive_versus_reduced_on_256_channels_at_28x28():
    """The classic comparison: 1x1 reductions cut the multiply-adds from 854M to 271M.

    (Slides that quote 358M for the reduced block add up the same six layers wrongly.)
    """
    naive = InceptionBlock.naive(256, 128, 192, 96, norm=False)
    reduced = InceptionBlock(256, 128, 64, 192, 64, 96, 64, norm=False)
    naive_macs = layer_table(naive, (1, 256, 28, 28)).total_macs
    reduced_macs = layer_table(reduced, (1, 256, 28, 28)).total_macs
    assert naive_macs == sum(conv_macs(256, c, k, 28) for c, k in [(128, 1), (192, 3), (96, 5)]) == 854_196_224
    assert reduced_macs == sum(conv_macs(a, b, k, 28) for a, b, k in [
        (256, 128, 1), (256, 64, 1), (64, 192, 3), (256, 64, 1), (64, 96, 5), (256, 64, 1)]) == 271_351_808


def zero_last_norm(block: nn.Module, norm: nn.BatchNorm2d) -> None:
    nn.init.zeros_(norm.weight)
    nn.init.zeros_(norm.bias)


@pytest.mark.parametrize("train", [False, True])
def test_basic_block_is_relu_identity_when_its_residual_branch_is_zeroed(train):
    block = BasicBlock(8, 8)
    zero_last_norm(block, block.bn2)
    block.train(train)
    x = torch.randn(3, 8, 6, 6)
    assert torch.equal(block(x), F.relu(x))
    plain = BasicBlock(8, 8, residual=False)
    zero_last_norm(plain, plain.bn2)
    assert torch.equal(plain.train(train)(x), torch.zeros_like(x))  # without the skip nothing gets through


def test_bottleneck_is_relu_identity_when_its_residual_branch_is_zeroed():
    block = Bottleneck(64, 16, groups=4, base_width=8).eval()
    zero_last_norm(block, block.bn3)
    x = torch.randn(2, 64, 5, 5)
    assert torch.equal(block(x), F.relu(x))
    assert block.conv2.groups == 4 and block.conv2.in_channels == 16 * 8 // 64 * 4


def test_residual_blocks_change_shape_through_their_shortcut():
    projection = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    assert BasicBlock(8, 16, stride=2, downsample=projection)(torch.randn(2, 8, 9, 9)).shape == (2, 16, 5, 5)
    assert BasicBlock(8, 16, 2, ZeroPadShortcut(16, 2))(torch.randn(2, 8, 9, 9)).shape == (2, 16, 5, 5)
    down = nn.Sequential(nn.Conv2d(64, 128, 1, stride=2, bias=False), nn.BatchNorm2d(128))
    assert Bottleneck(64, 32, 2, down)(torch.randn(1, 64, 8, 8)).shape == (1, 128, 4, 4)


def test_zero_pad_shortcut_subsamples_and_appends_zero_channels():
    x = torch.randn(2, 4, 7, 7)
    out = ZeroPadShortcut(10, stride=2)(x)
    assert out.shape == (2, 10, 4, 4)
    assert torch.equal(out[:, :4], x[:, :, ::2, ::2]) and not out[:, 4:].any()


def test_residual_gradient_reaches_the_input_through_the_skip():
    """With the branch zeroed, d out / d x is the ReLU mask: the skip carries the gradient unchanged."""
    block = BasicBlock(4, 4)
    zero_last_norm(block, block.bn2)
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    block.eval()(x).sum().backward()
    assert torch.equal(x.grad, (x > 0).float())


def test_dense_block_concatenates_its_input_and_every_layer():
    block = DenseBlock(3, in_channels=5, growth_rate=4, bn_size=2).eval()
    x = torch.randn(2, 5, 6, 6)
    out = block(x)
    assert out.shape == (2, 5 + 3 * 4, 6, 6) and block.out_channels == 17
    assert torch.equal(out[:, :5], x)  # the input is passed on untouched
    first = block.layers[0](x)
    assert torch.allclose(out[:, 5:9], first)
    assert [layer.conv1.in_channels for layer in block.layers] == [5, 9, 13]


def test_dense_layer_shapes_and_parameters():
    layer = DenseLayer(10, growth_rate=6, bn_size=4)
    assert layer(torch.randn(1, 10, 4, 4)).shape == (1, 6, 4, 4)
    expected = 2 * 10 + conv_params(10, 24, 1, bias=False) + 2 * 24 + conv_params(24, 6, 3, bias=False)
    assert sum(p.numel() for p in layer.parameters()) == expected


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_separable_equals_grouped_conv_then_1x1(stride):
    c, k = 6, 10
    block = DepthwiseSeparableConv(c, k, stride=stride, norm=False, activation=None)
    dw = nn.Conv2d(c, c, 3, stride=stride, padding=1, groups=c)
    pw = nn.Conv2d(c, k, 1)
    dw.load_state_dict(block.depthwise[0].state_dict())
    pw.load_state_dict(block.pointwise[0].state_dict())
    x = torch.randn(2, c, 9, 9)
    out = block(x)
    assert torch.allclose(out, pw(dw(x)), atol=1e-6)
    # groups=C is one filter per channel: channel i of the depthwise output sees only input channel i.
    per_channel = torch.cat([F.conv2d(x[:, i:i + 1], dw.weight[i:i + 1], dw.bias[i:i + 1], stride, 1)
                             for i in range(c)], dim=1)
    assert torch.allclose(dw(x), per_channel, atol=1e-6)


@pytest.mark.parametrize("m, n", [(32, 64), (512, 512)])
def test_depthwise_separable_cost_ratio_is_one_over_n_plus_one_over_k_squared(m, n):
    full = nn.Conv2d(m, n, 3, padding=1, bias=False)
    separable = DepthwiseSeparableConv(m, n, norm=False, activation=None)
    ratio = layer_table(separable, (1, m, 14, 14)).total_macs / layer_table(full, (1, m, 14, 14)).total_macs
    assert ratio == pytest.approx(1 / n + 1 / 9)


def test_depthwise_separable_default_has_norm_and_relu():
    block = DepthwiseSeparableConv(4, 8, stride=2)
    kinds = [type(m) for m in block.modules() if not list(m.children())]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert block(torch.randn(2, 4, 7, 7)).shape == (2, 8, 4, 4)


def test_inverted_residual_adds_its_input_only_when_shapes_match():
    block = InvertedResidual(16, 16, stride=1, expand_ratio=6).eval()
    assert block.use_residual
    zero_last_norm(block, block.conv[-1][1])  # the projection's batch norm
    x = torch.randn(2, 16, 5, 5)
    assert torch.equal(block(x), x)  # linear bottleneck: no ReLU after the sum
    down = InvertedResidual(16, 24, stride=2, expand_ratio=6)
    assert not down.use_residual and down(x).shape == (2, 24, 3, 3)
    widths = [m.out_channels for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [96, 96, 16]
    assert len([m for m in InvertedResidual(16, 16, expand_ratio=1).modules() if isinstance(m, nn.Conv2d)]) == 2


def test_inverted_residual_with_squeeze_excitation():
    block = InvertedResidual(8, 8, expand_ratio=4, se=True)
    assert any(isinstance(m, SqueezeExcitation) for m in block.modules())
    assert block(torch.randn(2, 8, 6, 6)).shape == (2, 8, 6, 6)


def test_squeeze_excitation_scales_each_channel_by_a_gate():
    se = SqueezeExcitation(8, 2)
    x = torch.randn(3, 8, 5, 5)
    out = se(x)
    gate = out / x
    assert torch.allclose(gate, gate[:, :, :1, :1].expand_as(gate), atol=1e-5)  # one gate per channel
    assert ((gate > 0) & (gate < 1)).all()
    nn.init.zeros_(se.fc2.weight)
    nn.init.zeros_(se.fc2.bias)
    assert torch.allclose(se(x), x / 2)  # sigmoid(0) = 1/2


def test_mlpconv_is_one_conv_then_1x1_layers():
    block = MLPConv(3, [96, 96, 96], kernel=11, stride=4)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(11, 11), (1, 1), (1, 1)]
    assert sum(p.numel() for p in convs[1].parameters()) == 96 * 96 + 96
    assert block(torch.randn(1, 3, 227, 227)).shape == (1, 96, 55, 55)


def test_conv_bn_act_variants():
    assert [type(m) for m in ConvBNAct(3, 4)] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    plain = ConvBNAct(3, 4, 5, norm=False, activation=None)
    assert [type(m) for m in plain] == [nn.Conv2d] and plain[0].bias is not None and plain[0].padding == (2, 2)
    assert isinstance(ConvBNAct(3, 4, activation=nn.ReLU6)[-1], nn.ReLU6)


def test_make_divisible_and_smallest_input():
    assert [make_divisible(v) for v in (32 * 0.35, 24 * 0.5, 1280, 13)] == [16, 16, 1280, 16]
    assert smallest_input([(2, 2, 0)] * 5) == 32
    assert smallest_input([(3, 2, 1)] * 5) == 1
    assert smallest_input([(3, 2, 0, True)]) == 2  # a ceil-mode 3x3 pool takes a 2x2 map, as PyTorch does
    assert smallest_input([(11, 4, 2), (3, 2, 0), (3, 2, 0), (3, 2, 0)]) == 63

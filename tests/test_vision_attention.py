"""Vision attention: SE, CBAM's gates, the spatial transformer, and their registry."""

import pytest
import torch
import torch.nn.functional as F

from s2s.attention.core import Attended
from s2s.attention.vision import (CBAM, VISION_ATTENTION, ChannelGate, SpatialGate,
                                  SpatialTransformer, SqueezeExcite, build_vision_attention)
from s2s.errors import UserError

MODULES = {
    "se": SqueezeExcite,
    "channel": ChannelGate,
    "spatial": lambda channels: SpatialGate(),
    "cbam": CBAM,
    "stn": SpatialTransformer,
}
SHAPES = [(2, 8, 5, 7), (1, 3, 1, 1), (3, 32, 9, 4), (2, 5, 13, 13), (1, 16, 2, 11)]


def weights_shape(name, shape):
    b, c, h, w = shape
    return {"se": (b, c), "channel": (b, c), "spatial": (b, h, w), "cbam": (b, h, w),
            "stn": (b, 2, 3)}[name]


def image(shape, seed=0, requires_grad=False):
    torch.manual_seed(seed)
    return torch.randn(*shape, requires_grad=requires_grad)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(MODULES))
def test_keeps_shape_and_gates_lie_in_unit_interval(name, shape):
    torch.manual_seed(1)
    module = MODULES[name](shape[1])
    result = module(3 * image(shape))
    assert isinstance(result, Attended)
    assert result.out.shape == shape
    assert result.weights.shape == weights_shape(name, shape)
    assert torch.isfinite(result.out).all()
    if name != "stn":
        assert result.weights.min() >= 0 and result.weights.max() <= 1


@pytest.mark.parametrize("name", list(MODULES))
def test_memory_and_mask_are_ignored(name):
    module = MODULES[name](8)
    x = image((2, 8, 5, 6))
    plain = module(x)
    given = module(x, memory=torch.randn(2, 4, 8), mask=torch.zeros(2, 4, dtype=torch.bool))
    torch.testing.assert_close(plain.out, given.out)
    torch.testing.assert_close(plain.weights, given.weights)


@pytest.mark.parametrize("name", list(MODULES))
def test_gradients_reach_input_and_every_parameter(name):
    torch.manual_seed(2)
    module = MODULES[name](8)
    if name == "stn":  # at the identity init the zero last layer blocks the localisation net
        torch.nn.init.normal_(module.localise[-1].weight, std=0.05)
    x = image((2, 8, 6, 5), requires_grad=True)
    out, _ = module(x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in module.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_squeeze_excite_scales_each_channel_by_its_gate():
    torch.manual_seed(3)
    se = SqueezeExcite(32, reduction=4)
    x = image((3, 32, 5, 4))
    out, s = se(x)
    torch.testing.assert_close(out, x * s[:, :, None, None])
    expected = torch.sigmoid(se.mlp(x.mean(dim=(2, 3))))
    torch.testing.assert_close(s, expected)
    assert s.std() > 0  # a real, input-dependent gate, not a constant


def test_hidden_width_is_channels_over_reduction_with_a_floor():
    assert SqueezeExcite(64, reduction=4).mlp[0].out_features == 16
    assert SqueezeExcite(64, reduction=16).mlp[0].out_features == 8
    assert SqueezeExcite(32, reduction=16, min_hidden=3).mlp[0].out_features == 3
    assert ChannelGate(256).mlp[0].out_features == 16
    assert ChannelGate(4).mlp[0].out_features == 8


def test_channel_gate_matches_shared_mlp_over_avg_and_max_pooling():
    torch.manual_seed(4)
    gate = ChannelGate(16, reduction=2)
    x = image((2, 16, 5, 7))
    out, m = gate(x)
    avg, peak = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    torch.testing.assert_close(m, torch.sigmoid(gate.mlp(avg) + gate.mlp(peak)))
    torch.testing.assert_close(out, x * m[:, :, None, None])
    assert not torch.allclose(m, torch.sigmoid(gate.mlp(avg)), atol=1e-3)
    assert not torch.allclose(m, torch.sigmoid(gate.mlp(peak)), atol=1e-3)


def test_channel_gate_sees_both_average_and_max():
    torch.manual_seed(5)
    gate = ChannelGate(4, reduction=1)
    flat = torch.zeros(1, 4, 4, 4)  # mean 0, max 0
    spike = torch.full((1, 4, 4, 4), -8 / 15)
    spike[:, :, 0, 0] = 8.0  # mean 0 again, max 8
    assert torch.allclose(flat.mean(dim=(2, 3)), spike.mean(dim=(2, 3)), atol=1e-6)
    assert (gate(flat).weights - gate(spike).weights).abs().max() > 1e-3  # max pooling counts
    dot = torch.zeros(1, 4, 4, 4)
    dot[:, :, 0, 0] = 1.0  # mean 1/16, max 1
    ones = torch.ones(1, 4, 4, 4)  # mean 1, max 1
    assert (gate(dot).weights - gate(ones).weights).abs().max() > 1e-3  # average pooling counts


def test_spatial_gate_matches_conv_over_channel_mean_and_max():
    torch.manual_seed(6)
    gate = SpatialGate(kernel_size=7)
    x = image((2, 6, 9, 5))
    out, m = gate(x)
    pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
    expected = torch.sigmoid(F.conv2d(pooled, gate.conv.weight, gate.conv.bias, padding=3))
    torch.testing.assert_close(m, expected[:, 0])
    torch.testing.assert_close(out, x * m[:, None])
    assert gate.conv.in_channels == 2 and gate.conv.kernel_size == (7, 7)
    assert m.std() > 0  # varies over positions


def test_spatial_gate_rejects_an_even_kernel():
    with pytest.raises(UserError, match="odd"):
        SpatialGate(kernel_size=4)


def test_cbam_is_the_spatial_gate_applied_after_the_channel_gate():
    torch.manual_seed(7)
    cbam = CBAM(16, reduction=4)
    x = image((2, 16, 7, 6))
    channel, spatial = cbam.gates(x)
    assert channel.weights.shape == (2, 16) and spatial.weights.shape == (2, 7, 6)
    by_hand = x * channel.weights[:, :, None, None] * spatial.weights[:, None]
    out, weights = cbam(x)
    torch.testing.assert_close(out, by_hand)
    torch.testing.assert_close(weights, spatial.weights)
    torch.testing.assert_close(channel.out, cbam.channel(x).out)
    torch.testing.assert_close(spatial.weights, cbam.spatial(cbam.channel(x).out).weights)
    # the spatial gate is computed from the channel step's output, not from x
    assert not torch.allclose(spatial.weights, cbam.spatial(x).weights, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
def test_spatial_transformer_starts_as_the_identity(shape):
    stn = SpatialTransformer(shape[1])
    x = image(shape)
    out, theta = stn(x)
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(shape[0], 2, 3)
    torch.testing.assert_close(theta, identity)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=1e-5)


def test_spatial_transformer_translation_moves_a_bright_pixel():
    stn = SpatialTransformer(2)
    h, w = 6, 8
    x = torch.zeros(2, 2, h, w)
    x[:, :, 3, 5] = 1.0
    # output pixel (r, c) reads input (r + 1, c + 2): one pixel is 2/H or 2/W in normalised units
    tx, ty = 2 * 2 / w, 2 * 1 / h
    with torch.no_grad():
        stn.localise[-1].bias.copy_(torch.tensor([1.0, 0.0, tx, 0.0, 1.0, ty]))
    out, theta = stn(x)
    torch.testing.assert_close(theta[0], torch.tensor([[1.0, 0.0, tx], [0.0, 1.0, ty]]))
    expected = torch.zeros_like(x)
    expected[:, :, 2, 3] = 1.0
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_spatial_transformer_out_size():
    x = image((2, 3, 10, 12))
    assert SpatialTransformer(3, out_size=(5, 7))(x).out.shape == (2, 3, 5, 7)
    assert SpatialTransformer(3, out_size=6)(x).out.shape == (2, 3, 6, 6)
    torch.testing.assert_close(SpatialTransformer(3, out_size=(10, 12))(x).out, x,
                               atol=1e-5, rtol=1e-5)


def test_registry_builds_every_name():
    assert set(VISION_ATTENTION.names()) == {"none", "se", "cbam", "stn"}
    assert build_vision_attention("none", 16) is None
    kinds = {"se": SqueezeExcite, "cbam": CBAM, "stn": SpatialTransformer}
    x = image((2, 16, 6, 5))
    for name, cls in kinds.items():
        module = build_vision_attention(name, 16)
        assert type(module) is cls
        assert module(x).out.shape == x.shape


def test_registry_rejects_unknown_names_and_suggests_the_closest():
    with pytest.raises(UserError, match='did you mean "cbam"'):
        build_vision_attention("cbma", 16)
    with pytest.raises(UserError, match="choose one of"):
        build_vision_attention("transformer", 16)

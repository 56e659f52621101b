"""Self-attention image encoders: patch order, the shared attention module, focal attention's
contract and its limiting case, captioners built on them (from pixels and on a frozen CNN)."""

import pytest
import torch

from s2s.attention import ATTENTION, MultiHeadAttention, Recorder, attention_config, record_attention
from s2s.attention.focal import FocalSelfAttention
from s2s.errors import UserError
from s2s.models.captioner import Captioner, CaptionerConfig
from s2s.models.rnn import RNNDecoderConfig
from s2s.models.transformer import TransformerDecoderConfig
from s2s.models.vit import FocalEncoderConfig, PatchEncoder, ViTEncoderConfig, positions_2d
from s2s.recipe import load_recipe

from conftest import step_through

RNN = RNNDecoderConfig(emb_dim=16, hidden_dim=32, dropout=0.0, attention=attention_config("additive"))
TRANSFORMER = TransformerDecoderConfig(d_model=32, heads=4, ffn_dim=64, dec_layers=2, dropout=0.0)
SMALL = dict(image_size=32, patch=8, d_model=32, heads=4, ffn_dim=64, layers=2)


def captioner(encoder, decoder=RNN):
    torch.manual_seed(0)
    return Captioner(CaptionerConfig(encoder=encoder, decoder=decoder), 30, 30).eval()


def inputs(batch=2, size=32):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(batch, 3, size, size, generator=g), torch.randint(4, 30, (batch, 5), generator=g),
            torch.ones(batch, 1, dtype=torch.bool))


# ----------------------------------------------------------------------------- patches


@pytest.mark.parametrize("row, col", [(0, 0), (1, 3), (3, 2)])
def test_patch_r_c_of_the_image_lands_at_grid_position_r_c(row, col):
    """With focal windows of one patch and no pooled levels every patch attends only to itself,
    so the whole encoder works patch by patch: changing one image patch changes one grid cell."""
    torch.manual_seed(0)
    cfg = FocalEncoderConfig(**SMALL, window=1, levels=0)
    encoder = PatchEncoder(cfg, 3, 32, True, lambda grid: FocalSelfAttention(32, 4, grid, 1, 0)).eval()
    image = torch.rand(1, 3, 32, 32)
    changed = image.clone()
    changed[:, :, row * 8:(row + 1) * 8, col * 8:(col + 1) * 8] = 1.0
    seen = []
    encoder.layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    before, after = encoder(image), encoder(changed)  # (1, D, 4, 4) each
    assert before.shape == (1, 32, 4, 4)
    moved = (after - before).abs().amax(1)[0] > 1e-6  # (4, 4)
    assert moved.nonzero().tolist() == [[row, col]]
    tokens = (seen[1] - seen[0]).abs().amax(-1)[0] > 1e-6  # (16,) tokens entering layer 0
    assert tokens.nonzero().flatten().tolist() == [row * 4 + col]


def test_positions_tell_rows_and_columns_apart():
    table = positions_2d(16, 3, 5)  # (D, h, w)
    assert table.shape == (16, 3, 5)
    assert torch.equal(table[:8, 1, 0], table[:8, 1, 4])  # the row half ignores the column
    assert torch.equal(table[8:, 0, 2], table[8:, 2, 2])  # the column half ignores the row
    flat = table.flatten(1).t()  # (15, D)
    assert torch.cdist(flat, flat).fill_diagonal_(1.0).min() > 0.1  # every patch distinct


def test_bad_encoder_settings_are_user_errors():
    with pytest.raises(UserError, match="patch .*must divide the image_size"):
        captioner(ViTEncoderConfig(**{**SMALL, "patch": 6}))
    with pytest.raises(UserError, match="d_model .*multiple of 4"):
        captioner(ViTEncoderConfig(**{**SMALL, "d_model": 30, "heads": 3}))
    with pytest.raises(UserError, match=r"model.encoder.d_model \(32\) must be divisible by "
                                        r"model.encoder.heads \(3\)"):
        load_recipe("shapes-caption-vit", ["model.encoder.d_model=32", "model.encoder.heads=3"])


# ----------------------------------------------------------------------------- the shared module


@pytest.mark.parametrize("encoder", [ViTEncoderConfig(**SMALL),
                                     FocalEncoderConfig(**{**SMALL, "patch": 4}, window=2, levels=2)],
                         ids=["vit", "focal"])
def test_encoder_self_attention_is_recorded_under_the_contract(encoder):
    model = captioner(encoder)
    names = model.attention_names()["encoder-self"]
    assert names == ["head.layers.0.self_attn", "head.layers.1.self_attn"]
    module = model.get_submodule(names[0])
    if encoder.type == "vit":  # the text Transformer's own module, from the attention registry
        assert type(module) is ATTENTION.get("multihead") is MultiHeadAttention
    else:
        assert isinstance(module, FocalSelfAttention)
    images, tgt, mask = inputs()
    with Recorder(model) as recorded:
        model(images, mask, tgt)
    h, w = model.grid_size
    for name in names:
        weights = recorded.weights(name)
        assert weights.shape == (2, 4, h * w, h * w)  # (B, H, N, N)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, h * w))
    assert model.vision_gates() == {}  # self-attention layers are not gates


@pytest.mark.parametrize("encoder", [ViTEncoderConfig(**SMALL), FocalEncoderConfig(**SMALL)],
                         ids=["vit", "focal"])
@pytest.mark.parametrize("decoder", [RNN, TRANSFORMER], ids=["rnn", "transformer"])
def test_steps_equal_teacher_forcing_over_patches(encoder, decoder):
    model = captioner(encoder, decoder)
    images, tgt, mask = inputs(3)
    with record_attention():
        logits, weights = model(images, mask, tgt)
        steps, _, _ = step_through(model, images, mask, tgt)
    torch.testing.assert_close(steps, logits, rtol=1e-4, atol=1e-5)
    assert model.grid_size == (4, 4) and weights.shape[-1] == 16


# ----------------------------------------------------------------------------- focal attention


@pytest.mark.parametrize("grid", [(4, 4), (3, 5)])
def test_focal_attention_with_one_window_and_no_levels_is_full_self_attention(grid):
    torch.manual_seed(0)
    focal = FocalSelfAttention(32, 4, grid, window=max(grid), levels=0)
    full = MultiHeadAttention(32, 4)
    full.load_state_dict(focal.state_dict())
    x = torch.randn(2, grid[0] * grid[1], 32)
    torch.testing.assert_close(focal(x).out, full(x).out)
    with record_attention():
        mine, theirs = focal(x), full(x)
    torch.testing.assert_close(mine.out, theirs.out)
    torch.testing.assert_close(mine.weights, theirs.weights)


@pytest.mark.parametrize("grid, window, levels", [((8, 8), 2, 2), ((5, 7), 2, 3), ((6, 6), 3, 1),
                                                  ((3, 3), 4, 2), ((4, 4), 1, 0)])
def test_focal_weights_spread_over_patches_rows_sum_to_one(grid, window, levels):
    torch.manual_seed(0)
    focal = FocalSelfAttention(16, 2, grid, window, levels)
    x = torch.randn(2, grid[0] * grid[1], 16, requires_grad=True)
    plain = focal(x)
    assert plain.weights is None  # nothing is spent on weights unless recording
    with record_attention():
        recorded = focal(x)
    n = grid[0] * grid[1]
    assert recorded.weights.shape == (2, 2, n, n) and (recorded.weights >= 0).all()
    torch.testing.assert_close(recorded.weights.sum(-1), torch.ones(2, 2, n))
    torch.testing.assert_close(plain.out, recorded.out)
    plain.out.sum().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is not None for p in focal.parameters())


@pytest.mark.parametrize("grid, window, levels", [((8, 8), 2, 2), ((5, 7), 2, 3), ((6, 6), 3, 1),
                                                  ((16, 16), 2, 3)])
def test_focal_windows_and_one_masked_attention_over_the_bank_agree(grid, window, levels):
    """Small grids run one masked attention over the whole bank, large ones per window."""
    torch.manual_seed(0)
    focal = FocalSelfAttention(16, 2, grid, window, levels)
    x = torch.randn(2, grid[0] * grid[1], 16)
    found = {}
    for dense in (True, False):
        focal.dense = dense
        with record_attention():
            recorded = focal(x)  # weights spread over the patches
        found[dense] = (recorded, focal(x))  # and the fused kernel, no weights
    for mine, theirs in zip(found[True], found[False]):
        torch.testing.assert_close(mine.out, theirs.out)
        assert (mine.weights is None) == (theirs.weights is None)
        if mine.weights is not None:
            torch.testing.assert_close(mine.weights, theirs.weights)
    assert FocalSelfAttention(16, 2, (8, 8), 2, 2).dense
    assert not FocalSelfAttention(16, 2, (16, 16), 2, 3).dense  # the bank is 9 times the keys


def test_focal_patch_attends_near_finely_and_far_coarsely():
    focal = FocalSelfAttention(16, 2, (8, 8), window=2, levels=2)
    regions = dict(focal.regions(3, 4))
    assert regions[0] == [(1, 3, 5, 7)]  # its 2x2 window and one patch around it
    assert len(regions[1]) == 9 and (0, 2, 2, 4) in regions[1]  # 3x3 summaries of 2x2 patches
    assert sorted(regions[2]) == [(0, 0, 4, 4), (0, 4, 4, 8), (4, 0, 8, 4), (4, 4, 8, 8)]  # all
    far = torch.zeros(1, 64, 16)
    far[0, 63] = 5.0  # patch (7, 7): outside the fine region of patch (3, 4)
    with record_attention():
        weights = focal(torch.randn(1, 64, 16) + far).weights[0, :, 3 * 8 + 4]  # (H, N)
    far_block = weights.reshape(2, 8, 8)[:, 6:, 6:]  # seen only through a 4x4-patch summary
    assert torch.allclose(far_block, far_block[:, :1, :1].expand_as(far_block))  # spread evenly
    with pytest.raises(UserError, match="outside the 8x8 patch grid"):
        focal.regions(8, 0)


def test_focal_is_not_offered_to_text_models():
    """It needs a patch grid, so it stays out of the text registry (and its contract tests)."""
    assert all(ATTENTION.get(name) is not FocalSelfAttention for name in ATTENTION.names())


# ----------------------------------------------------------------------------- hybrid


def test_hybrid_trains_only_the_layers_on_frozen_cnn_features():
    enc = ViTEncoderConfig(**{**SMALL, "image_size": 64, "patch": 1}, backbone="efficientnet",
                           stage=6, pretrained=False)
    model = captioner(enc)
    assert model.input_kind == "features" and model.grid_size == (2, 2)
    images, tgt, mask = inputs(2, 64)
    features = model.backbone_features(images)
    assert features.shape == (2, 320, 2, 2) and not features.requires_grad
    logits, _ = model(features, mask, tgt)
    logits.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.layers[0].self_attn.q_proj.weight.grad is not None

"""The one attention contract, checked over every registered module."""

import math

import pytest
import torch

from s2s.attention import (ATTENTION, MultiHeadAttention, attention_config, build_attention,
                           causal_mask, padding_mask, record_attention)
from s2s.attention.kernel import GaussianKernelAttention

TYPES = [t for t in ATTENTION.names() if t != "none"]


def config(kind):
    """The mechanism's settings, with 4 heads where it has heads."""
    return attention_config(kind, **({"heads": 4} if kind == "multihead" else {}))


def inputs(dim=16, batch=3, tq=4, tk=6):
    torch.manual_seed(0)
    x = torch.randn(batch, tq, dim, requires_grad=True)
    memory = torch.randn(batch, tk, dim, requires_grad=True)
    mask = padding_mask(torch.tensor([tk, 3, 1]), tk)  # (B, Tk): rows with 6, 3 and 1 real keys
    return x, memory, mask


@pytest.mark.parametrize("kind", TYPES)
def test_contract_shapes_normalisation_and_masking(kind):
    module = build_attention(config(kind), 16, 16)
    x, memory, mask = inputs()
    with record_attention():
        out, weights = module(x, memory, mask)
    heads = 4 if kind == "multihead" else 1
    assert out.shape == (3, 4, 16)
    assert weights.shape == (3, heads, 4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, heads, 4))
    assert (weights >= 0).all()
    assert weights[1, :, :, 3:].abs().max() == 0  # masked keys get exactly zero weight
    assert weights[2, :, :, 1:].abs().max() == 0
    torch.testing.assert_close(weights[2, :, :, 0], torch.ones(heads, 4))


@pytest.mark.parametrize("kind", TYPES)
def test_gradients_reach_queries_memory_and_parameters(kind):
    module = build_attention(config(kind), 16, 16)
    x, memory, mask = inputs()
    out, _ = module(x, memory, mask)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert memory.grad is not None and memory.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("kind", TYPES)
def test_prepared_keys_give_the_same_result(kind):
    """Decoders compute `prepare(memory)` once per sentence; it must not change the result."""
    module = build_attention(config(kind), 16, 16).eval()
    x, memory, mask = inputs()
    with record_attention():
        direct = module(x, memory, mask)
        prepared = module(x, memory, mask, module.prepare(memory))
    torch.testing.assert_close(direct.out, prepared.out)
    torch.testing.assert_close(direct.weights, prepared.weights)


def test_padding_keys_change_nothing():
    """Extra padded keys (masked) leave outputs unchanged."""
    for kind in TYPES:
        module = build_attention(config(kind), 16, 16).eval()
        x, memory, _ = inputs()
        padded = torch.cat([memory, torch.randn(3, 5, 16)], dim=1)
        short = module(x, memory, torch.ones(3, 6, dtype=torch.bool)).out
        long = module(x, padded, padding_mask(torch.full((3,), 6), 11)).out
        torch.testing.assert_close(short, long, msg=kind)


def test_multihead_matches_the_formula_and_fast_path():
    torch.manual_seed(1)
    mha = MultiHeadAttention(16, 4).eval()
    x, memory, mask = inputs()
    q = mha.q_proj(x).view(3, 4, 4, 4).transpose(1, 2)
    k = mha.k_proj(memory).view(3, 6, 4, 4).transpose(1, 2)
    v = mha.v_proj(memory).view(3, 6, 4, 4).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(4)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    expected = mha.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(3, 4, 16))
    fast = mha(x, memory, mask)
    assert fast.weights is None  # the fused kernel does not materialise weights
    with record_attention():
        slow = mha(x, memory, mask)
    torch.testing.assert_close(fast.out, expected)
    torch.testing.assert_close(slow.out, expected)
    torch.testing.assert_close(slow.weights, scores.softmax(-1))


def test_causal_mask_hides_the_future():
    torch.manual_seed(2)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    mask = causal_mask(5)[None].expand(2, 5, 5)
    before = mha(x, mask=mask).out
    changed = x.clone()
    changed[:, 3:] = torch.randn(2, 2, 16)  # change tokens 3 and 4
    after = mha(changed, mask=mask).out
    torch.testing.assert_close(before[:, :3], after[:, :3])
    assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_gaussian_kernel_is_nadaraya_watson():
    """f(x) = sum_i softmax(-(x - x_i)^2 w / 2) y_i, with w = softplus(raw width)."""
    module = GaussianKernelAttention(1, 1)
    keys = torch.tensor([[[0.0], [1.0], [2.0]]])
    query = torch.tensor([[[0.9]]])
    w = torch.nn.functional.softplus(module.raw_width)
    expected = torch.softmax(-((0.9 - keys[0, :, 0]) ** 2) * w / 2, dim=0)
    _, weights = module(query, keys)
    torch.testing.assert_close(weights[0, 0, 0], expected)


def test_unknown_type_and_mismatched_sizes_are_user_errors():
    from s2s.errors import UserError

    with pytest.raises(UserError, match="did you mean"):
        build_attention(attention_config("additiv"), 8, 8)
    with pytest.raises(UserError, match="general"):
        build_attention(attention_config("dot"), 8, 16)


@pytest.mark.parametrize("kind", TYPES)
def test_all_queries_at_once_equal_one_query_at_a_time(kind):
    """A decoder's teacher-forced pass and its steps must agree, stateful mechanisms included:
    the per-step state threads from one query to the next through `next_state`."""
    module = build_attention(config(kind), 16, 16).eval()
    x, memory, mask = inputs()
    prepared = module.prepare(memory)
    with record_attention():
        together = module(x, memory, mask, prepared, module.init_state(memory, mask))
        state, rows = module.init_state(memory, mask), []
        for t in range(x.size(1)):
            step = module(x[:, t:t + 1], memory, mask, prepared, state)
            state = module.next_state(state, step.weights)
            rows.append(step)
    torch.testing.assert_close(torch.cat([r.out for r in rows], 1), together.out)
    torch.testing.assert_close(torch.cat([r.weights for r in rows], 2), together.weights)


def test_local_p_attends_inside_its_window_with_renormalised_gaussian_weights():
    torch.manual_seed(3)
    module = build_attention(attention_config("local_p", window=2), 16, 16)
    x, memory, _ = inputs(tk=12)
    mask = torch.ones(3, 12, dtype=torch.bool)
    _, weights = module(x, memory, mask)
    centre = module.centre(x, mask[:, None], 12)  # (B, Tq)
    offset = torch.arange(12)[None, None] - centre[:, :, None]
    assert weights[:, 0][offset.abs() > 2].abs().max() == 0  # nothing outside [p - D, p + D]
    content = x @ module.key_proj(memory).transpose(1, 2)
    expected = torch.exp(content - offset ** 2 / (2 * 1.0 ** 2)) * (offset.abs() <= 2)
    torch.testing.assert_close(weights[:, 0], expected / expected.sum(-1, keepdim=True))


def test_location_attention_reads_where_the_previous_step_looked():
    torch.manual_seed(4)
    module = build_attention(attention_config("location", kernel=3), 16, 16)
    x, memory, mask = inputs()
    start = module.init_state(memory, mask)
    torch.testing.assert_close(start["previous"][1, :3], torch.full((3,), 1 / 3))  # uniform, real keys
    assert start["previous"][1, 3:].abs().max() == 0
    elsewhere = {"previous": torch.roll(start["previous"], 2, dims=1)}
    a = module(x[:, :1], memory, mask, state=start).weights
    b = module(x[:, :1], memory, mask, state=elsewhere).weights
    assert not torch.allclose(a, b)  # the previous weights change the scores


def test_coverage_accumulates_attention_and_its_loss_penalises_attending_again():
    torch.manual_seed(5)
    module = build_attention(attention_config("coverage", loss=2.0), 16, 16)
    x, memory, mask = inputs()
    state = module.init_state(memory, mask)
    _, weights = module(x, memory, mask, state=state)
    after = module.next_state(state, weights)
    torch.testing.assert_close(module.coverage(after), weights[:, 0].sum(1))  # (B, Tk)
    rows = weights[:, 0]
    before = rows.cumsum(1) - rows
    target_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    expected = 2.0 * (torch.minimum(rows, before).sum(-1) * target_mask).sum()
    torch.testing.assert_close(module.regularizer(weights, target_mask), expected)
    fertile = build_attention(attention_config("coverage", fertility=2.0), 16, 16)
    keys, phi = fertile.prepare(memory)
    assert ((phi > 0) & (phi < 2)).all()  # Tu et al.: Phi_j = N sigmoid(U_f h_j)

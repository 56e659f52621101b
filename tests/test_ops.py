"""The hand-written fast ops equal the PyTorch ops they replace."""

import pytest
import torch
import torch.nn.functional as F

import s2s.ops as ops


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_linear_cross_entropy_matches_pytorch(bias, smoothing, monkeypatch):
    monkeypatch.setattr(ops, "ROWS_PER_BLOCK", 64)  # several blocks, and a ragged last one
    torch.manual_seed(0)
    h = torch.randn(150, 16, requires_grad=True)
    w = torch.randn(40, 16, requires_grad=True)
    b = torch.randn(40, requires_grad=True) if bias else None
    target = torch.randint(0, 40, (150,))
    expected = F.cross_entropy(F.linear(h, w, b), target, label_smoothing=smoothing, reduction="sum")
    grads = torch.autograd.grad(expected * 3, [t for t in (h, w, b) if t is not None])
    got = ops.linear_cross_entropy(h, w, b, target, smoothing)
    torch.testing.assert_close(got, expected)
    for mine, theirs in zip(torch.autograd.grad(got * 3, [t for t in (h, w, b) if t is not None]), grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_linear_cross_entropy_without_gradients():
    h, w = torch.randn(10, 8), torch.randn(20, 8)
    t = torch.randint(0, 20, (10,))
    with torch.no_grad():
        torch.testing.assert_close(ops.linear_cross_entropy(h, w, None, t),
                                   F.cross_entropy(h @ w.t(), t, reduction="sum"))


def test_dropout_keeps_the_expectation_and_its_gradient_uses_the_same_mask():
    torch.manual_seed(0)
    x = torch.ones(1000, 1000, requires_grad=True)
    y = ops.dropout(x, 0.1, training=True)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - 13 / 128)) < 2e-3  # p rounded to 13/128
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 128 / 115))
    assert abs(y.mean().item() - 1.0) < 3e-3
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # same mask, same scale
    assert ops.dropout(x, 0.1, training=False) is x


def test_dropout_is_reproducible_from_the_seed():
    x = torch.randn(64, 64)
    torch.manual_seed(3)
    a = ops.dropout(x, 0.3, True)
    torch.manual_seed(3)
    assert torch.equal(a, ops.dropout(x, 0.3, True))
    assert not torch.equal(a, ops.dropout(x, 0.3, True))

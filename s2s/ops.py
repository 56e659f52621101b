"""Two operations written out by hand because the stock PyTorch ones are slow on a CPU.

- `dropout`: PyTorch draws one random number per element (`bernoulli_`), which on CPU costs
  more than the matrix multiply next to it. Here one 64-bit draw gives eight random bytes; an
  element is kept when its byte's low 7 bits are >= round(128 p). So p is rounded to a multiple
  of 1/128 (0.1 -> 0.1016) and the kept values are scaled by exactly 1 / (1 - p_rounded). The
  draws come from torch's generator, so runs stay reproducible and resumable. On GPUs the stock
  op is used.
- `linear_cross_entropy`: the output layer and the label-smoothed cross-entropy over the
  vocabulary in one step, a block of rows at a time. The forward pass computes the loss and, in
  the same sweep, the gradient of the logits (softmax - smoothed target), folds it into the
  gradients of the hidden states and of the weight, and keeps only those. The (tokens x vocab)
  logits never exist as a whole, and each block is reused while it is still in cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ROWS_PER_BLOCK = 512


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[Tensor, float]:
    """A boolean mask keeping each element with probability 1 - p (p rounded to k/128)."""
    drop = round(p * 128)
    numel = torch.Size(shape).numel()
    words = torch.empty((numel + 7) // 8, dtype=torch.int64, device=device).random_()
    low7 = words.view(torch.uint8)[:numel].view(shape) & 0x7F  # every byte has 7 random low bits
    return low7 >= drop, 128.0 / (128 - drop)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        keep, scale = keep_mask(x.shape, p, x.device)
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x * keep * scale

    @staticmethod
    def backward(ctx, grad: Tensor):
        (keep,) = ctx.saved_tensors
        return grad * keep * ctx.scale, None


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Drop-in for F.dropout; fast on CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or round(p * 128) == 0:
        return F.dropout(x, p, training)
    return _Dropout.apply(x, p)


class _LinearCrossEntropy(torch.autograd.Function):
    """Per block of rows: logits -> loss and (optionally) gradients, without keeping the logits.

    With q = (1 - s) onehot(t) + s/V, the loss is lse - (1 - s) x_t - (s/V) sum_j x_j and the
    logits' gradient is softmax - q. The two terms of q are cheap to apply after the matrix
    products, on (rows x D) rather than (rows x V): sum_j x_j = h . sum_j W_j (+ sum b), and
    q's contribution to the gradients is a gather / index_add of rows of W and h.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor,
                smoothing: float, want_grads: bool) -> Tensor:
        hidden, weight = hidden.float(), weight.float()
        bias = bias.float() if bias is not None else None
        uniform = smoothing / weight.size(0)
        weight_sum = weight.sum(0)  # (D,)
        row_sums = hidden @ weight_sum + (bias.sum() if bias is not None else 0.0)  # (N,) sum_j x_j
        total = hidden.new_zeros((), dtype=torch.float64)
        grad_hidden = torch.empty_like(hidden) if want_grads else None
        grad_weight = torch.zeros_like(weight) if want_grads else None
        grad_bias = torch.zeros_like(bias) if want_grads and bias is not None else None
        for start in range(0, hidden.size(0), ROWS_PER_BLOCK):
            rows = slice(start, start + ROWS_PER_BLOCK)
            h, t = hidden[rows], target[rows]  # (n, D), (n,)
            logits = h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())  # (n, V)
            lse = torch.logsumexp(logits, dim=-1)  # (n,)
            picked = logits.gather(1, t[:, None]).squeeze(1)  # (n,)
            total += (lse - (1 - smoothing) * picked - uniform * row_sums[rows]).sum(dtype=torch.float64)
            if want_grads:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                torch.mm(probs, weight, out=grad_hidden[rows])  # (n, D)
                grad_weight.addmm_(probs.t(), h)  # (V, D)
                if grad_bias is not None:
                    grad_bias += probs.sum(0)
        if want_grads:  # subtract q: the uniform part, then the target part
            grad_hidden -= uniform * weight_sum + (1 - smoothing) * weight[target]
            grad_weight -= uniform * hidden.sum(0)
            grad_weight.index_add_(0, target, hidden, alpha=-(1 - smoothing))
            if grad_bias is not None:
                grad_bias -= uniform * hidden.size(0)
                grad_bias.index_add_(0, target, torch.full_like(target, -(1 - smoothing), dtype=bias.dtype))
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.has_bias = bias is not None
        return total.float()

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        return (grad_hidden * grad_loss, grad_weight * grad_loss,
                grad_bias * grad_loss if ctx.has_bias else None, None, None, None)


def linear_cross_entropy(hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor,
                         smoothing: float = 0.0) -> Tensor:
    """sum_i CE(hidden_i W^T + b, target_i) with label smoothing, as F.cross_entropy defines it.

    hidden (N, D), weight (V, D), bias (V,) or None, target (N,) -> a scalar (summed over rows).
    Computed in fp32 whatever the autocast state, like PyTorch's own loss functions.
    """
    want_grads = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias))
    with torch.autocast(hidden.device.type, enabled=False):
        return _LinearCrossEntropy.apply(hidden, weight, bias, target, smoothing, want_grads)

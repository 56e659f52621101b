"""fp32 decoding on the CPU with linear layers whose weights are pre-packed for oneDNN.

A decoding step multiplies a few hundred rows (sentences x beam) by every weight matrix, and at
those shapes PyTorch's default CPU matmul is far from the GEMM rate: the output projection onto
an 8,000-piece vocabulary took 3.0 ms for 5 rows and 11.7 ms for 160 on the 2-core benchmark
machine, against 0.43 and 7.1 ms with the weight reordered once into oneDNN's blocked layout
(the layout PyTorch's own compiler uses for frozen CPU graphs). Packing is done once at load, in
memory; the parameters stay as they are (state dicts, exports and losses read them unchanged),
and a layer whose weight has changed since, or that runs with gradients, computes as
`nn.Linear` does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

PACK_ROWS = 320  # the row count oneDNN tunes the layout for: a batch of 64 sentences x beam 5


def _packing_ops():
    """oneDNN's reorder and linear ops, or None where this PyTorch build has no oneDNN."""
    try:
        ops = torch.ops.mkldnn
        return ops._reorder_linear_weight, ops._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


class PackedLinear(nn.Linear):
    """`nn.Linear` that, for inference, multiplies by a oneDNN-packed copy of its weight."""

    def pack(self) -> None:
        reorder, self._linear = _packing_ops()
        self._packed = reorder(self.weight.detach(), PACK_ROWS)
        self._packed_at = self.weight._version  # the weight's version counter when packed

    def forward(self, x: Tensor) -> Tensor:
        if self.training or torch.is_grad_enabled() or self.weight._version != self._packed_at:
            return super().forward(x)
        return self._linear(x.contiguous(), self._packed, self.bias, "none", [], "")


def pack_linears(model: nn.Module) -> int:
    """Turn every `nn.Linear` of a CPU fp32 model into a `PackedLinear`, in place; returns how
    many (0 where oneDNN is missing or refuses the weights, and the model is left as it was)."""
    if _packing_ops() is None or not torch.backends.mkldnn.is_available():
        return 0
    layers = [m for m in model.modules() if type(m) is nn.Linear
              and m.weight.device.type == "cpu" and m.weight.dtype == torch.float32]
    try:
        for layer in layers:
            layer.__class__ = PackedLinear
            layer.pack()
    except RuntimeError:
        for layer in layers:
            layer.__class__ = nn.Linear
        return 0
    return len(layers)


def unpack_linears(model: nn.Module) -> None:
    """Undo `pack_linears`: every `PackedLinear` computes as `nn.Linear` again (for comparisons)."""
    for module in model.modules():
        if isinstance(module, PackedLinear):
            module.__class__ = nn.Linear

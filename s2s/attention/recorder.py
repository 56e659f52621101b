"""The one way to see attention: record every weight by module name during a forward pass.

    with Recorder(model) as recorded:
        model(src, src_mask, tgt_in)          # any pass: teacher-forced, one step, an image
    recorded.weights("decoder.layers.1.cross_attn")   # (B, H, Tq, Tk)

Forward hooks on every `Attention` module (text attention and vision gates alike) collect each
call's `Attended.weights`; recording is switched on for the duration, so multi-head attention
computes its weights instead of taking the fused kernel. Nothing is stored on the modules, and
outside a Recorder no hook exists, so training and decoding pay nothing for inspection.
A module called once per step (an RNN decoder's attention) gives one row per call: `weights`
joins them along the query axis.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from s2s.attention.core import Attended, Attention, record_attention


class Recorder:
    """Collects the weights of every `Attention` module of `model` while the block runs."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.calls: dict[str, list[Tensor]] = {}  # module name -> weights of each call, in order

    def __enter__(self) -> "Recorder":
        self._recording = record_attention()
        self._recording.__enter__()
        self._handles = [module.register_forward_hook(self._hook(name))
                         for name, module in self.model.named_modules()
                         if isinstance(module, Attention)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._recording.__exit__(*exc)

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            if isinstance(output, Attended) and output.weights is not None:
                self.calls.setdefault(name, []).append(output.weights.detach())
        return hook

    @property
    def names(self) -> list[str]:
        """Names of the modules that produced weights, in the order they first ran."""
        return list(self.calls)

    def weights(self, name: str) -> Tensor:
        """The module's weights; several calls of a (B, H, 1, Tk) query are joined into (B, H, T, Tk)."""
        calls = self.calls[name]
        if len(calls) == 1:
            return calls[0]
        return torch.cat(calls, dim=-2)

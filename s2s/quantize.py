"""int8 decoding: dynamic quantization of a trained model's linear layers, in memory only.

Weights become int8 once (per tensor), activations are quantized per batch as they arrive, and
the matrix multiplies run in int8 through PyTorch's own quantized backends: oneDNN on CPUs with
AMX-INT8 tiles (there it is several times faster than fp32 at decoding shapes), x86/FBGEMM on
the others. Every `nn.Linear` is converted, the output projection onto the vocabulary included
(the largest matrix of a decoding step), and the RNNs' GRU/LSTM layers (their input and recurrent
matrices); embeddings, attention arithmetic and normalisation stay fp32. The quantized model is a copy: the fp32 model and its checkpoint are never touched.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from s2s.errors import UserError


def int8_engine() -> str:
    """The quantized backend for this CPU: oneDNN where AMX int8 tiles exist, else x86."""
    engines = torch.backends.quantized.supported_engines
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    if amx and "onednn" in engines:
        return "onednn"
    return "x86" if "x86" in engines else "fbgemm"


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of `model` (on the CPU, in eval mode) with dynamic int8 linear and RNN layers."""
    if next(model.parameters()).device.type != "cpu":
        raise UserError("--quantize int8 runs on the CPU; use --device cpu")
    torch.backends.quantized.engine = int8_engine()
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear, nn.GRU, nn.LSTM},
                                dtype=torch.qint8)

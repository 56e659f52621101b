"""How an s2s Transformer's weights correspond to a Hugging Face Marian model's (MarianMTModel).

Marian is a post-norm Transformer with the same sub-layers as s2s's: self-attention, then
(decoder) cross-attention, then the feed-forward network, each followed by a LayerNorm; no final
LayerNorms; biases on every projection; optionally a bias on the output layer
(`final_logits_bias`). What differs is stated here once:

- Names: `encoder.{i}.attn_block.norm` is `model.encoder.layers.{i}.self_attn_layer_norm`, and
  so on (`LAYER_NAMES`).
- Positions: both use the same sinusoids, but s2s interleaves them (sin, cos, sin, cos ...)
  while Marian puts all sines first, then all cosines. The two tables differ only by the order
  of the model's d_model features, and a Transformer computes the same function when every
  weight that reads or writes those features is reordered the same way (LayerNorm's mean and
  variance do not depend on the order). So conversion reorders features (`to_marian_order`,
  `to_s2s_order`) rather than changing either model's position table.
"""

from __future__ import annotations

import torch
from torch import Tensor

# s2s name (inside encoder.{i} / decoder.layers.{i}) -> Marian name (inside its layers.{i})
ENCODER_LAYER = {"self_attn": "self_attn", "attn_block.norm": "self_attn_layer_norm",
                 "ffn.inner": "fc1", "ffn.outer": "fc2", "ffn_block.norm": "final_layer_norm"}
DECODER_LAYER = {"self_attn": "self_attn", "self_block.norm": "self_attn_layer_norm",
                 "cross_attn": "encoder_attn", "cross_block.norm": "encoder_attn_layer_norm",
                 "ffn.inner": "fc1", "ffn.outer": "fc2", "ffn_block.norm": "final_layer_norm"}
ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")
# how a weight touches the d_model features: read them (columns), write them (rows), or be them
READS = ("q_proj", "k_proj", "v_proj", "fc1")
WRITES = ("out_proj", "fc2")


def layer_names(enc_layers: int, dec_layers: int) -> dict[str, str]:
    """{s2s module name: Marian module name} for every layer's linear and LayerNorm modules."""
    names = {}
    for prefix, marian, table, count in (("encoder", "model.encoder.layers", ENCODER_LAYER, enc_layers),
                                         ("decoder.layers", "model.decoder.layers", DECODER_LAYER,
                                          dec_layers)):
        for i in range(count):
            for ours, theirs in table.items():
                if ours in ("self_attn", "cross_attn"):
                    for proj in ATTENTION:
                        names[f"{prefix}.{i}.{ours}.{proj}"] = f"{marian}.{i}.{theirs}.{proj}"
                else:
                    names[f"{prefix}.{i}.{ours}"] = f"{marian}.{i}.{theirs}"
    return names


def marian_feature_order(dim: int) -> Tensor:
    """Marian feature k is s2s feature order[k]: s2s's sines (even features), then its cosines."""
    return torch.cat([torch.arange(0, dim, 2), torch.arange(1, dim, 2)])


def reorder_features(name: str, tensor: Tensor, order: Tensor) -> Tensor:
    """Reorder the d_model features a weight reads (columns), writes (rows and bias) or holds
    (embeddings, output layer, LayerNorms). `name` is the Marian-side module name + parameter."""
    if name == "final_logits_bias":  # (1, vocabulary): no features
        return tensor
    module, _, param = name.rpartition(".")
    kind = module.rsplit(".", 1)[-1]
    if kind in READS:
        return tensor[:, order] if param == "weight" else tensor
    if kind in WRITES:
        return tensor[order]
    if kind.endswith("layer_norm"):
        return tensor[order]
    return tensor[:, order]  # token embeddings and the output layer: (vocabulary, d_model)


def to_marian_order(name: str, tensor: Tensor, dim: int) -> Tensor:
    return reorder_features(name, tensor, marian_feature_order(dim))


def to_s2s_order(name: str, tensor: Tensor, dim: int) -> Tensor:
    return reorder_features(name, tensor, torch.argsort(marian_feature_order(dim)))

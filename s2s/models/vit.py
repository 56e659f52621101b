"""Self-attention image encoders: a Vision Transformer and focal self-attention layers.

Vision Transformer (Dosovitskiy et al. 2020, https://arxiv.org/abs/2010.11929): the image is cut
into `patch` x `patch` squares, each projected linearly to a vector (one strided convolution),
2-D positions are added, and Transformer encoder layers let every patch attend to every other.
The layers are the text Transformer's own (`s2s.models.transformer.EncoderLayer`, multi-head
attention through the attention registry); with `type: focal` each layer's self-attention is
focal self-attention instead (`s2s.attention.focal`), fine near a patch and pooled far from it.

The encoder reads pixels (`backbone: none`) or the grid of a frozen EfficientNet-Lite0
(`backbone: efficientnet`, the hybrid of the ViT paper: the CNN's cells are the patches, its
features are computed once and cached, and only these layers train). Either way it returns the
patch grid (B, d_model, h, w), which the captioner flattens into regions exactly as CNN features.

Positions are 2-D sinusoids: the first half of the channels encode the row with the Transformer's
sin/cos table, the second half the column, so patch (r, c) is told both coordinates apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from s2s.errors import UserError
from s2s.models.transformer import EncoderLayer, TransformerDecoderSettings, sinusoids
from s2s.ops import dropout
from s2s.typed import Fraction, NonNegativeInt, PositiveInt, Probability


@dataclass(frozen=True)
class PatchEncoderSettings:
    """What both self-attention encoders share (their configs below add `type` and more)."""

    image_size: PositiveInt = 64  # images are resized (shorter side) and centre-cropped to this
    patch: PositiveInt = 8  # patch side in pixels, or in backbone grid cells
    d_model: PositiveInt = 128  # a multiple of 4 (2-D positions) and of heads
    heads: PositiveInt = 4
    ffn_dim: PositiveInt = 256
    layers: PositiveInt = 4
    dropout: Probability = 0.0  # on the patch embeddings and every sub-layer's output
    attn_dropout: Probability = 0.0
    activation: Literal["relu", "gelu"] = "gelu"
    norm: Literal["pre", "post"] = "pre"
    backbone: Literal["none", "efficientnet"] = "none"  # efficientnet: frozen, features cached
    stage: int = -1  # the backbone's feature stage (-1 = its 1280-channel head)
    pretrained: bool = True  # the backbone's ImageNet weights
    augment: Fraction = 0.1  # without a backbone: random brightness/contrast of training images


@dataclass(frozen=True)
class ViTEncoderConfig(PatchEncoderSettings):
    """`model.encoder: {type: vit}`: full multi-head self-attention over the patches."""

    type: Literal["vit"] = "vit"


@dataclass(frozen=True)
class FocalEncoderConfig(PatchEncoderSettings):
    """`model.encoder: {type: focal}`: focal self-attention over the patches."""

    type: Literal["focal"] = "focal"
    window: PositiveInt = 2  # query windows of window x window patches; fine keys around them
    levels: NonNegativeInt = 2  # coarse levels, pooling window * 2^l patches each


def positions_2d(dim: int, rows: int, cols: int) -> Tensor:
    """(dim, rows, cols): sinusoids of the row in the first dim/2 channels, of the column after."""
    half = dim // 2
    by_row = sinusoids(rows, half).t()[:, :, None].expand(half, rows, cols)  # (D/2, h, w)
    by_col = sinusoids(cols, half).t()[:, None, :].expand(half, rows, cols)  # (D/2, h, w)
    return torch.cat([by_row, by_col])


def layer_settings(cfg: PatchEncoderSettings) -> TransformerDecoderSettings:
    """The Transformer settings an `EncoderLayer` reads, from the encoder's config."""
    return TransformerDecoderSettings(d_model=cfg.d_model, heads=cfg.heads, ffn_dim=cfg.ffn_dim,
                                      dropout=cfg.dropout, attn_dropout=cfg.attn_dropout,
                                      activation=cfg.activation, norm=cfg.norm)


class PatchEncoder(nn.Module):
    """Patch embedding, 2-D positions, Transformer encoder layers: (B, C, S, S) -> (B, D, h, w).

    `in_size` is the input's side (pixels, or backbone cells); `self_attention(grid)` makes each
    layer's attention module for the (h, w) patch grid, or is None for multi-head attention.
    """

    def __init__(self, cfg: PatchEncoderSettings, in_channels: int, in_size: int, pixels: bool,
                 self_attention: Callable[[tuple[int, int]], nn.Module] | None = None):
        super().__init__()
        if in_size % cfg.patch:
            what = "image_size" if pixels else f"backbone grid ({in_size} cells)"
            raise UserError(f"model.encoder.patch ({cfg.patch}) must divide the {what}"
                            f"{f' ({in_size})' if pixels else ''}")
        if cfg.d_model % 4:
            raise UserError(f"model.encoder.d_model ({cfg.d_model}) must be a multiple of 4 "
                            "(half the channels encode the row, half the column)")
        grid = (in_size // cfg.patch, in_size // cfg.patch)
        self.pixels, self.dropout = pixels, cfg.dropout
        self.embed = nn.Conv2d(in_channels, cfg.d_model, cfg.patch, stride=cfg.patch)
        self.register_buffer("positions", positions_2d(cfg.d_model, *grid), persistent=False)
        settings = layer_settings(cfg)
        self.layers = nn.ModuleList(
            EncoderLayer(settings, None if self_attention is None else self_attention(grid))
            for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()

    def forward(self, src: Tensor) -> Tensor:
        x = (src - 0.5) / 0.5 if self.pixels else src  # (B, C, S, S)
        x = self.embed(x) + self.positions  # (B, D, h, w)
        b, d, h, w = x.shape
        x = dropout(x.flatten(2).transpose(1, 2), self.dropout, self.training)  # (B, N, D)
        for layer in self.layers:
            x = layer(x, None)
        return self.norm(x).transpose(1, 2).reshape(b, d, h, w)  # (B, D, h, w)

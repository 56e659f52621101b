"""What a training step minimises: cross-entropy, or (captioning) self-critical sequence training.

The trainer asks `objective_at(step)` once per step and leaves the rest to the objective: which
batches an epoch has, whether dropout is on, and the gradients of one step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from s2s import distributed as dist
from s2s.data.batching import Batch, token_batches
from s2s.models import Seq2Seq
from s2s.ops import linear_cross_entropy
from s2s.recipe import TrainConfig
from s2s.run import autocast
from s2s.self_critical import SelfCritical
from s2s.vocab import PAD


def self_critical_at(cfg: TrainConfig, step: int) -> bool:
    """Whether optimiser step `step` (1-based) is a self-critical one."""
    return bool(cfg.self_critical_from) and step > cfg.self_critical_from


class TokenLoss(nn.Module):
    """Summed (label-smoothed) cross-entropy over real target tokens.

    Padding is removed before the projection onto the vocabulary, the most expensive layer, and
    the projection and the loss are fused (`s2s.ops`). A module, so that DDP can wrap the whole
    forward pass.
    """

    def __init__(self, model: Seq2Seq, smoothing: float):
        super().__init__()
        self.model, self.smoothing = model, smoothing

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor,
                tgt_out: torch.Tensor) -> torch.Tensor:
        features, weights = self.model.forward_features(src, src_mask, tgt_in)  # (B, T, D)
        keep = tgt_out != PAD  # (B, T)
        out = self.model.generator
        loss = linear_cross_entropy(features[keep], out.weight, out.bias, tgt_out[keep],
                                    self.smoothing)  # (N, V) logits never materialised
        return loss + self.model.regularizer(weights, keep)


def batch_loss(loss: nn.Module, batch: Batch) -> torch.Tensor:
    return loss(batch.src, batch.src_mask, batch.tgt_in, batch.tgt_out)


class CrossEntropy:
    """The next token of the reference, given the reference so far (teacher forcing)."""

    name, dropout = "loss", True

    def __init__(self, model: Seq2Seq, data, cfg: TrainConfig, device: torch.device, precision: str):
        self.data, self.cfg, self.device, self.precision = data, cfg, device, precision
        self.loss = dist.wrap(TokenLoss(model, cfg.label_smoothing), device)

    def batches(self, rows: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """Token batches of training rows (length-bucketed where the split wants it)."""
        return token_batches(self.data.src_lens, self.data.tgt_lens, rows, self.cfg.batch_tokens,
                             rng, by_length=self.data.length_buckets)

    def gradients(self, group: list[np.ndarray]) -> tuple[float, int]:
        """Backward over the group's batches; (loss per target token, target tokens)."""
        batches = [self.data.batch(rows).to(self.device) for rows in group]
        tokens = dist.all_sum(sum(b.target_tokens for b in batches))
        total = 0.0
        for i, batch in enumerate(batches):
            with dist.no_sync_unless(self.loss, i == len(batches) - 1):
                with autocast(self.device, self.precision):
                    loss = batch_loss(self.loss, batch)
                # the gradient of the mean over every token of every rank (DDP averages ranks)
                (loss * dist.world_size() / tokens).backward()
            total += loss.item()
        return dist.all_sum(total) / tokens, tokens


class SelfCriticalObjective:
    """Sampled captions scored with CIDEr-D against the image's references (`s2s.self_critical`).

    Samples come from the model as it decodes, without dropout; epochs go over images."""

    name, dropout = "reward", False

    def __init__(self, model: Seq2Seq, data, tokenizer, cfg: TrainConfig, max_len: int,
                 device: torch.device, precision: str):
        self.model, self.data, self.cfg = model, data, cfg
        self.device, self.precision = device, precision
        self.critic = SelfCritical(model, tokenizer, data.references, cfg.self_critical_samples, max_len)

    def batches(self, rows: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """Batches of image indices (of the images the training rows belong to)."""
        images = rng.permutation(np.unique(self.data.image_of_row[rows]))
        n = self.cfg.self_critical_images
        return [images[i:i + n] for i in range(0, len(images), n)]

    def gradients(self, group: list[np.ndarray]) -> tuple[float, int]:
        """Backward over the group's images; (mean reward, sampled tokens)."""
        samples = dist.all_sum(sum(len(images) for images in group) * self.cfg.self_critical_samples)
        rewards, tokens = [], 0
        for images in group:
            src = self.data.images(images).to(self.device)
            with autocast(self.device, self.precision):
                loss, batch_rewards, batch_tokens = self.critic.loss(src, images)
            (loss * dist.world_size() / samples).backward()  # the mean over every rank's samples
            rewards += batch_rewards
            tokens += batch_tokens
        dist.average_gradients(self.model)  # the samples did not go through DDP's forward
        return dist.all_sum(sum(rewards)) / samples, dist.all_sum(tokens)

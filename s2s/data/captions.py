"""Image-captioning splits: one training row per (image, caption), references per image.

A split offers what the trainer needs of a translation split (lengths, `batch(rows)`,
`decode_units()`), so training, validation and search are shared. Images are decoded on demand,
or, for a frozen pretrained encoder, passed once through it and the features kept in a
memory-mapped cache file in the run directory, so every epoch after the first costs only the
decoder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from s2s.data.batching import Batch, pad
from s2s.data.corpus import hf_datasets
from s2s.data.images import image_errors, jitter, to_tensor
from s2s.data.tokenizer import BOS, EOS, Tokenizer
from s2s.errors import UserError
from s2s.files import atomic_path
from s2s.recipe import DataConfig
from s2s.registry import did_you_mean

if TYPE_CHECKING:
    import datasets

PUNCTUATION = re.compile(r"^[^\w]+$")


def clean_caption(text: str) -> str:
    """Lower case, punctuation-only tokens removed, single spaces (the usual captioning setup)."""
    return " ".join(t for t in text.lower().split() if not PUNCTUATION.match(t))


def caption_lists(ds: datasets.Dataset, cfg: DataConfig) -> list[list[str]]:
    """The reference captions of every image (a caption column may hold a string or a list)."""
    for name in (cfg.src, cfg.tgt):
        if name not in ds.column_names:
            raise UserError(f"column {name!r} not found in {cfg.path or cfg.dataset}"
                            f"{did_you_mean(name, ds.column_names)}; columns: {', '.join(ds.column_names)}")
    lists = [[c] if isinstance(c, str) else list(c) for c in ds[cfg.tgt]]
    if cfg.clean_captions:
        lists = [[clean_caption(c) for c in caps] for caps in lists]
    for i, caps in enumerate(lists):
        if not caps or not all(isinstance(c, str) and c.strip() for c in caps):
            raise UserError(f"row {i} of {cfg.path or cfg.dataset}: column {cfg.tgt!r} needs "
                            "one or more non-empty captions")
    return lists


def image_fingerprint(ds: datasets.Dataset, column: str) -> str:
    """A hash of the images' encoded bytes, for cache keys.

    Not the dataset's own fingerprint: for a local folder that follows the files' modification
    times, so a re-copied folder would recompute every cached feature (minutes on a CPU).
    """
    digest = hashlib.sha1()
    raw = ds.select_columns([column])
    if isinstance(raw.features[column], hf_datasets().Image):
        raw = raw.cast_column(column, hf_datasets().Image(decode=False))
    for start in range(0, len(raw), 1000):
        for item in raw[start:start + 1000][column]:
            if isinstance(item, dict):
                item = item["bytes"] or Path(item["path"]).read_bytes()
            digest.update(item if isinstance(item, bytes) else repr(item).encode())
    return digest.hexdigest()


class CaptionSplit:
    def __init__(self, ds: datasets.Dataset, cfg: DataConfig, tokenizer: Tokenizer, model,
                 cache_dir: Path, name: str):
        self.ds, self.image_column, self.model, self.name = ds, cfg.src, model, name
        self.size = model.cfg.encoder.image_size
        self.references = caption_lists(ds, cfg)
        self.image_of_row = np.array([i for i, caps in enumerate(self.references) for _ in caps])
        self.captions = tokenizer.encode_tgt([c for caps in self.references for c in caps])
        self.tgt_lens = np.array([len(c) for c in self.captions], dtype=np.int64)
        self.src_lens = np.zeros_like(self.tgt_lens)  # an image costs no source tokens
        trainable = model.input_kind == "images"  # else a frozen backbone's cached features
        self.features = (None if trainable
                         else self._cached_features(cache_dir, name, image_fingerprint(ds, cfg.src)))
        # A trainable encoder's BatchNorm needs batches that sample the data; bucketing by
        # caption length would group, on shapes, images with the same number of objects.
        self.length_buckets = not trainable
        self.augment = model.cfg.encoder.augment if trainable and name == "train" else 0.0

    def __len__(self) -> int:
        return len(self.captions)

    def rows_within(self, max_src: int, max_tgt: int) -> np.ndarray:
        return np.flatnonzero((self.tgt_lens >= 1) & (self.tgt_lens <= max_tgt))

    def images(self, image_indices) -> torch.Tensor:
        """(B, 3, size, size) in [0, 1], or (B, C, h, w) cached features."""
        if self.features is not None:
            return torch.from_numpy(self.features[np.asarray(image_indices)]).float()
        return torch.stack([to_tensor(image, self.size) for image in self.decode(image_indices)])

    def decode(self, image_indices) -> list:
        """PIL images of these rows, decoded one by one so that a bad one can be named."""
        column, rows = self.image_column, list(map(int, image_indices))
        feature = self.ds.features[column]
        if not isinstance(feature, hf_datasets().Image):
            return self.ds.select_columns([column])[rows][column]
        images = []
        for row, value in zip(rows, self._encoded[rows][column]):
            with image_errors(value.get("path") or f"in row {row} of the {self.name} split"):
                images.append(feature.decode_example(value))
        return images

    @functools.cached_property
    def _encoded(self) -> datasets.Dataset:
        """The image column as stored (bytes and path), not decoded."""
        column, stored = self.image_column, hf_datasets().Image(decode=False)
        return self.ds.select_columns([column]).cast_column(column, stored)

    def batch(self, rows: np.ndarray) -> Batch:
        src = self.images(self.image_of_row[rows])
        if self.augment:
            src = jitter(src, self.augment)
        mask = torch.ones(len(rows), 1, dtype=torch.bool)  # one source unit: the image
        caps = [self.captions[i] for i in rows]
        return Batch(src, mask, pad(caps, prefix=BOS), pad(caps, suffix=EOS), rows)

    def decode_units(self) -> tuple[np.ndarray, list[list[str]]]:
        """One row per image (its first caption) and all of that image's references."""
        first = np.flatnonzero(np.r_[True, self.image_of_row[1:] != self.image_of_row[:-1]])
        return first, self.references

    def _cached_features(self, cache_dir: Path, name: str, fingerprint: str) -> np.ndarray:
        """The frozen backbone's output for every image, computed once (float16 memmap)."""
        enc = self.model.cfg.encoder
        key = hashlib.sha1(json.dumps([fingerprint, enc.type, enc.stage, enc.image_size,
                                       enc.pretrained]).encode()).hexdigest()[:16]
        path = cache_dir / f"{name}-features-{key}.npy"
        if path.is_file():
            return np.load(path, mmap_mode="r")
        count = len(self.references)
        with atomic_path(path) as tmp:
            out = None
            for start in range(0, count, 32):
                batch = self.decode(range(start, min(start + 32, count)))
                maps = self.model.backbone_features(torch.stack([to_tensor(i, self.size) for i in batch]))
                if out is None:
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                                    shape=(count, *maps.shape[1:]))
                out[start:start + len(batch)] = maps.numpy().astype(np.float16)
            out.flush()
            del out
        return np.load(path, mmap_mode="r")

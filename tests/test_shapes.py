"""Tests for the built-in shapes captioning corpus (s2s.data.shapes).

Most checks read the answer back from the pixels without the module's drawing or caption
code (only its name and RGB tables): the colour of each object, its size, its shape and its
cell are recovered from the image and the boxes, and the caption is rebuilt word for word.
"""

import hashlib
import os
import random
import re
import subprocess
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from s2s.data import shapes

ROOT = Path(__file__).resolve().parents[1]
SIDE = 64
EDGES = [round(i * SIDE / 3) for i in range(4)]  # 3x3 grid: 0, 21, 43, 64
EXPECTED_COLOURS = {"red", "green", "blue", "yellow", "purple", "orange"}


@pytest.fixture(scope="module")
def corpus():
    return (shapes.generate("train", 400, seed=1) + shapes.generate("validation", 100, seed=1)
            + shapes.generate("test", 100, seed=1))


def _pixels(example):
    return np.asarray(example["image"], dtype=np.int16)


def _near(pixels, rgb):
    """Pixels within the module's noise bound of `rgb` on every channel."""
    return np.abs(pixels - np.array(rgb, dtype=np.int16)).max(axis=-1) <= shapes.NOISE


def _cell(box):
    """(row, column) of the grid cell holding the box's centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return int(cy * 3 // SIDE), int(cx * 3 // SIDE)


def _shape_of(mask):
    """Classify a filled shape from its (tight, square) mask."""
    side = mask.shape[0]
    top, bottom, fill = mask[0].sum(), mask[-1].sum(), mask.mean()
    if fill > 0.95:
        return "square"
    if top <= 2 and bottom == side:
        return "triangle"
    if top <= 1 and bottom <= 1 and mask[side // 2].all():
        return "diamond"
    if fill > 0.65 and not mask[0, 0]:
        return "circle"
    if fill < 0.6 and top == bottom and mask[side // 2].all() and mask[:, side // 2].all():
        return "cross"
    return "?"


def _colour_of(pixels, box):
    x0, y0, x1, y1 = box
    counts = {name: int(_near(pixels[y0:y1, x0:x1], rgb).sum())
              for name, rgb in shapes.COLOURS.items()}
    return max(counts, key=counts.get), counts


def _read(example):
    """[(row, col, size, colour, shape)] recovered from the image and the boxes."""
    pixels, objects = _pixels(example), []
    for box, shape in zip(example["boxes"], example["shapes"]):
        x0, y0, x1, y1 = box
        colour, _ = _colour_of(pixels, box)
        mask = _near(pixels[y0:y1, x0:x1], shapes.COLOURS[colour])
        size = {side: name for name, side in shapes.SIZES.items()}[x1 - x0]
        objects.append((*_cell(box), size, colour, _shape_of(mask)))
    return objects


def _digest(examples):
    h = hashlib.sha256()
    for ex in examples:
        h.update(ex["image"].tobytes())
        h.update(repr([ex[k] for k in ("caption", "boxes", "shapes", "noun_positions")]).encode())
    return h.hexdigest()


def test_tables():
    assert set(shapes.SHAPES) >= {"circle", "square", "triangle"} and len(shapes.SHAPES) >= 4
    assert set(shapes.COLOURS) == EXPECTED_COLOURS
    assert set(shapes.SIZES) == {"small", "large"}
    assert shapes.SIZES["large"] >= 1.4 * shapes.SIZES["small"]
    assert shapes.IMAGE_SIZE == SIDE and shapes.SPLITS == ("train", "validation", "test")
    for a, b in combinations(shapes.COLOURS.values(), 2):
        assert max(abs(x - y) for x, y in zip(a, b)) > 4 * shapes.NOISE, (a, b)
    for lo in range(shapes.BACKGROUND[0], shapes.BACKGROUND[1] + 1):  # every background grey
        for rgb in shapes.COLOURS.values():
            assert max(abs(lo - c) for c in rgb) > 2 * shapes.NOISE


def test_record_shape(corpus):
    for ex in corpus:
        assert set(ex) == {"image", "caption", "boxes", "shapes", "noun_positions"}
        assert isinstance(ex["image"], Image.Image) and ex["image"].mode == "RGB"
        assert ex["image"].size == (SIDE, SIDE)
        assert re.fullmatch(r"[a-z]+( [a-z]+)*", ex["caption"]), ex["caption"]
        n = len(ex["boxes"])
        assert 1 <= n <= 3 and len(ex["shapes"]) == len(ex["noun_positions"]) == n
        assert all(type(v) is int for box in ex["boxes"] for v in box)
        assert all(type(p) is int for p in ex["noun_positions"])


def test_known_captions():
    objects = [(4, "large", "blue", "square"), (0, "small", "red", "circle")]  # any order in
    assert shapes.caption(objects) == ("a small red circle above a large blue square", [3, 8])
    objects = [(3, "large", "green", "triangle"), (5, "small", "yellow", "circle"),
               (6, "small", "red", "square")]
    assert shapes.caption(objects) == (
        "a large green triangle left of a small yellow circle above a small red square", [3, 9, 14])
    assert shapes.caption([(8, "small", "orange", "cross")]) == ("a small orange cross", [3])


def test_deterministic_within_and_across_processes():
    first = shapes.generate("train", 30, seed=3)
    assert _digest(first) == _digest(shapes.generate("train", 30, seed=3))
    assert _digest(first) == _digest(list(shapes.iterate("train", 30, seed=3)))
    assert _digest(first[:10]) == _digest(shapes.generate("train", 10, seed=3))  # a prefix
    assert _digest(first) != _digest(shapes.generate("train", 30, seed=4))
    code = ("import hashlib, random; random.seed(99); from s2s.data import shapes\n"
            "h = hashlib.sha256()\n"
            "for ex in shapes.generate('train', 30, 3):\n"
            "    h.update(ex['image'].tobytes())\n"
            "    h.update(repr([ex[k] for k in ('caption', 'boxes', 'shapes', 'noun_positions')])"
            ".encode())\n"
            "print(h.hexdigest())")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == _digest(first)


def test_uses_no_global_rng():
    state = np.random.get_state()
    py_state = random.getstate()
    shapes.generate("train", 5, seed=0)
    assert random.getstate() == py_state
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(np.random.get_state(), state))


def test_caption_is_rebuilt_from_the_pixels(corpus):
    for ex in corpus:
        objects = _read(ex)
        cells = [(row, col) for row, col, *_ in objects]
        assert cells == sorted(cells) and len(set(cells)) == len(cells), ex["boxes"]
        assert [o[4] for o in objects] == ex["shapes"], (ex["caption"], objects)
        words = []
        for i, (row, col, size, colour, shape) in enumerate(objects):
            if i:
                words += ["above"] if row > objects[i - 1][0] else ["left", "of"]
            words += ["a", size, colour, shape]
        assert " ".join(words) == ex["caption"]


def _parse(caption):
    """[(size, colour, shape)] and the relations between them, read with the grammar."""
    words, objects, relations = caption.split(), [], []
    while True:
        assert words[0] == "a" and len(words) >= 4, caption
        objects.append(tuple(words[1:4]))
        words = words[4:]
        if not words:
            return objects, relations
        n = 1 if words[0] == "above" else 2 if words[:2] == ["left", "of"] else 0
        assert n, caption
        relations.append(" ".join(words[:n]))
        words = words[n:]


def test_relations_agree_with_boxes(corpus):
    for ex in corpus:
        objects, relations = _parse(ex["caption"])
        boxes = ex["boxes"]
        assert len(objects) == len(boxes) == ex["caption"].split().count("a")
        assert [o[2] for o in objects] == ex["shapes"]
        for rel, prev, nxt in zip(relations, boxes, boxes[1:]):
            below = nxt[1] >= prev[3]  # next top at or under the previous bottom
            beside = nxt[1] < prev[3] and prev[1] < nxt[3] and nxt[0] >= prev[2]
            assert below != beside, boxes
            assert (rel == "above") == below, (ex["caption"], boxes)
            assert (rel == "left of") == beside, (ex["caption"], boxes)


def test_noun_positions(corpus):
    for ex in corpus:
        words = ex["caption"].split()
        for pos, shape in zip(ex["noun_positions"], ex["shapes"]):
            assert words[pos] == shape and words[pos - 3] == "a"
            assert words[pos - 2] in shapes.SIZES and words[pos - 1] in shapes.COLOURS
        assert [i for i, w in enumerate(words) if w in shapes.SHAPES] == ex["noun_positions"]


def test_boxes_inside_own_cells_and_disjoint(corpus):
    offsets = set()
    for ex in corpus:
        for box in ex["boxes"]:
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= SIDE and 0 <= y0 < y1 <= SIDE
            assert x1 - x0 == y1 - y0 in shapes.SIZES.values()
            row, col = _cell(box)
            assert EDGES[col] <= x0 and x1 <= EDGES[col + 1], box  # wholly inside its cell
            assert EDGES[row] <= y0 and y1 <= EDGES[row + 1], box
            centre = (EDGES[col] + EDGES[col + 1]) / 2, (EDGES[row] + EDGES[row + 1]) / 2
            offset = (x0 + x1) / 2 - centre[0], (y0 + y1) / 2 - centre[1]
            assert max(map(abs, offset)) <= 3.5, (box, offset)  # jittered by a few pixels only
            offsets.add(offset)
        for a, b in combinations(ex["boxes"], 2):
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    assert len(offsets) > 20  # objects are not all dead centre


def test_colours_live_in_their_boxes(corpus):
    for ex in corpus:
        pixels = _pixels(ex)
        outside = np.ones((SIDE, SIDE), dtype=bool)
        for box in ex["boxes"]:
            outside[box[1]:box[3], box[0]:box[2]] = False
        for rgb in shapes.COLOURS.values():  # no shape colour anywhere outside the boxes
            assert not (_near(pixels, rgb) & outside).any(), ex["caption"]
        words = ex["caption"].split()
        for box, pos in zip(ex["boxes"], ex["noun_positions"]):
            colour, counts = _colour_of(pixels, box)
            assert colour == words[pos - 1]
            area = (box[2] - box[0]) * (box[3] - box[1])
            assert counts[colour] >= 0.4 * area
            assert sum(counts.values()) == counts[colour]  # no other shape colour in the box
            ys, xs = np.nonzero(_near(pixels[box[1]:box[3], box[0]:box[2]],
                                      shapes.COLOURS[colour]))
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (
                0, 0, box[2] - box[0], box[3] - box[1])  # the box is tight


def test_background_is_light_and_noisy(corpus):
    for ex in corpus[:50]:
        pixels = _pixels(ex)
        mask = np.ones((SIDE, SIDE), dtype=bool)
        for x0, y0, x1, y1 in ex["boxes"]:
            mask[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = False
        bg = pixels[mask]
        assert bg.mean() > 190 and bg.std() > 2 and len(np.unique(bg)) > 10


def test_large_is_larger(corpus):
    painted = {"small": [], "large": []}
    for ex in corpus:
        words, pixels = ex["caption"].split(), _pixels(ex)
        for box, pos in zip(ex["boxes"], ex["noun_positions"]):
            x0, y0, x1, y1 = box
            painted[words[pos - 2]].append(
                _near(pixels[y0:y1, x0:x1], shapes.COLOURS[words[pos - 1]]).sum())
            assert x1 - x0 == shapes.SIZES[words[pos - 2]]
    assert min(painted["large"]) > max(painted["small"])
    assert np.mean(painted["large"]) > 2 * np.mean(painted["small"])


def test_everything_appears(corpus):
    counts = Counter(len(ex["boxes"]) for ex in corpus)
    assert set(counts) == {1, 2, 3} and all(150 <= c <= 250 for c in counts.values()), counts
    words = Counter(w for ex in corpus for w in ex["caption"].split())
    for name in (*shapes.SHAPES, *shapes.COLOURS, *shapes.SIZES, "above", "left"):
        assert words[name] >= 20, name
    cells = Counter(_cell(box) for ex in corpus for box in ex["boxes"])
    assert len(cells) == 9


def test_splits_do_not_share_images():
    hashes = {split: {hashlib.sha256(ex["image"].tobytes()).hexdigest()
                      for ex in shapes.iterate(split, 300, seed=0)} for split in shapes.SPLITS}
    assert all(len(h) == 300 for h in hashes.values())  # no repeats within a split either
    assert not hashes["train"] & hashes["validation"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["validation"] & hashes["test"]
    captions = {split: [ex["caption"] for ex in shapes.iterate(split, 20, seed=0)]
                for split in shapes.SPLITS}
    assert captions["train"] != captions["validation"] != captions["test"]


@pytest.mark.parametrize("call", [shapes.generate, shapes.iterate])
def test_bad_arguments(call):
    with pytest.raises(ValueError, match="split"):
        call("dev", 3)
    with pytest.raises(ValueError, match="size"):
        call("train", -1)
    assert list(call("test", 0)) == []


def _same(ours, stored):
    assert isinstance(stored["image"], Image.Image)
    assert np.array_equal(np.asarray(stored["image"].convert("RGB")), np.asarray(ours["image"]))
    assert {k: stored[k] for k in ("caption", "boxes", "shapes", "noun_positions")} == {
        k: ours[k] for k in ("caption", "boxes", "shapes", "noun_positions")}


def test_datasets_round_trip(tmp_path):
    ds = datasets.Dataset.from_generator(lambda: shapes.iterate("train", 50, 0),
                                         cache_dir=str(tmp_path))
    assert len(ds) == 50 and isinstance(ds.features["image"], datasets.Image)
    for ours, stored in zip(shapes.generate("train", 50, 0), ds):
        _same(ours, stored)
    listed = shapes.generate("validation", 20, 5)
    ds = datasets.Dataset.from_list(listed)
    assert isinstance(ds.features["image"], datasets.Image)
    for ours, stored in zip(listed, ds):
        _same(ours, stored)

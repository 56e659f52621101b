"""A built-in, deterministic image-captioning corpus of coloured shapes on a 3x3 grid.

Each example is a small RGB image (IMAGE_SIZE x IMAGE_SIZE) holding one to three shapes, each
a circle, square, triangle, diamond or cross in one of six colours and two sizes, and a caption
that describes them in reading order: "a small red circle above a large blue square", "a large
green triangle left of a small yellow cross above a small purple diamond". The image is cut
into a 3x3 grid and every object sits alone in its cell (centred, jittered by a few pixels,
never touching a neighbour), so objects never overlap and "above" / "left of" are never in
doubt. The background is a light grey with per-pixel noise, bounded by NOISE, so no pixel is
ever mistaken for a shape colour but a model cannot key on exact values either.

Every example records the pixel box of each object and the index of its shape noun in the
caption, so a test can check where a captioning model looked when it said "circle". The
caption is a pure function of the objects, and everything is a pure function of
(split, size, seed); splits draw from different random streams.
"""

import numpy as np
from PIL import Image, ImageDraw

from s2s.data import SPLITS, split_stream

__all__ = ["SPLITS", "IMAGE_SIZE", "GRID", "SHAPES", "COLOURS", "SIZES", "NOISE", "BACKGROUND",
           "caption", "draw", "generate", "iterate"]

IMAGE_SIZE = 64
GRID = 3  # cells per side; each object has a cell to itself
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = {  # well apart from each other and from any background grey
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (40, 70, 220),
    "yellow": (240, 210, 20),
    "purple": (150, 40, 190),
    "orange": (250, 130, 10),
}
SIZES = {"small": 11, "large": 17}  # side of the object's (square) box in pixels
NOISE = 12  # every channel of every pixel moves by a uniform integer in [-NOISE, NOISE]
BACKGROUND = (205, 245)  # grey level of the background, drawn per image (inclusive range)
JITTER = 3  # most pixels an object moves off its cell's centre, along each axis
MARGIN = 1  # pixels kept free inside each cell edge, so neighbours never touch

# Pixel edges of the grid cells: 0, 21, 43, 64 for a 64-pixel image.
EDGES = tuple(round(i * IMAGE_SIZE / GRID) for i in range(GRID + 1))
assert max(SIZES.values()) <= min(b - a for a, b in zip(EDGES, EDGES[1:])) - 2 * MARGIN


def caption(objects):
    """(caption, noun_positions) for `objects`, a list of (cell, size, colour, shape).

    Objects are described in reading order (cell = row * GRID + column); the next object is
    "above" when it lies in a lower row and "left of" when it lies further along the same row.
    """
    words, nouns, previous = [], [], None
    for cell, size, colour, shape in sorted(objects, key=lambda o: o[0]):
        if previous is not None:
            words += ["above"] if cell // GRID > previous // GRID else ["left", "of"]
        words += ["a", size, colour, shape]
        nouns.append(len(words) - 1)
        previous = cell
    return " ".join(words), nouns


def _place(cell, side, rng):
    """The top-left corner of a `side`-pixel object in `cell`: centred, jittered, inside."""
    corner = []
    for index in (cell % GRID, cell // GRID):  # x from the column, y from the row
        lo, hi = EDGES[index] + MARGIN, EDGES[index + 1] - MARGIN - side  # allowed range
        centre = (lo + hi) // 2
        corner.append(rng.randint(max(lo, centre - JITTER), min(hi, centre + JITTER)))
    return corner


def _draw_shape(canvas, shape, box, fill):
    """Draw `shape` filling the square half-open `box`, touching all four of its sides."""
    x0, y0, x1, y1 = box
    right, bottom, side = x1 - 1, y1 - 1, x1 - x0  # PIL coordinates are inclusive
    mid_x, mid_y = (x0 + right) / 2, (y0 + bottom) / 2
    if shape == "circle":
        canvas.ellipse([x0, y0, right, bottom], fill=fill)
    elif shape == "square":
        canvas.rectangle([x0, y0, right, bottom], fill=fill)
    elif shape == "triangle":
        canvas.polygon([(mid_x, y0), (right, bottom), (x0, bottom)], fill=fill)
    elif shape == "diamond":
        canvas.polygon([(mid_x, y0), (right, mid_y), (mid_x, bottom), (x0, mid_y)], fill=fill)
    elif shape == "cross":
        arm = side // 3 + (side - side // 3) % 2  # same parity as side, so the bars centre
        off = (side - arm) // 2
        canvas.rectangle([x0 + off, y0, x0 + off + arm - 1, bottom], fill=fill)
        canvas.rectangle([x0, y0 + off, right, y0 + off + arm - 1], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def draw(objects, boxes, grey, noise_seed):
    """The RGB image of `objects` (size, colour, shape per entry) in `boxes` on noisy `grey`."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (grey, grey, grey))
    canvas = ImageDraw.Draw(image)
    for (_, colour, shape), box in zip(objects, boxes):
        _draw_shape(canvas, shape, box, COLOURS[colour])
    noise = np.random.default_rng(noise_seed).integers(
        -NOISE, NOISE + 1, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.int16)
    pixels = np.asarray(image, dtype=np.int16) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def _example(rng):
    cells = sorted(rng.sample(range(GRID * GRID), rng.randint(1, 3)))  # reading order
    objects = [(cell, rng.choice(list(SIZES)), rng.choice(list(COLOURS)), rng.choice(SHAPES))
               for cell in cells]
    boxes = []
    for cell, size, _, _ in objects:
        x0, y0 = _place(cell, SIZES[size], rng)
        boxes.append([x0, y0, x0 + SIZES[size], y0 + SIZES[size]])
    grey = rng.randint(*BACKGROUND)
    image = draw([o[1:] for o in objects], boxes, grey, rng.getrandbits(64))
    text, nouns = caption(objects)
    return {"image": image, "caption": text, "boxes": boxes,
            "shapes": [o[3] for o in objects], "noun_positions": nouns}


def generate(split: str, size: int, seed: int = 0) -> list[dict]:
    """`size` examples for split "train" | "validation" | "test", a pure function of its arguments.

    Each example has 1, 2 or 3 objects (equally likely) in distinct cells, each with a uniform
    size, colour and shape, and is a dict with "image" (RGB PIL image), "caption", "boxes"
    ([x0, y0, x1, y1] per object in caption order, x1 / y1 exclusive), "shapes" (per object)
    and "noun_positions" (index of each object's shape noun in caption.split()).
    """
    return list(iterate(split, size, seed))


def iterate(split: str, size: int, seed: int = 0):
    """The examples of `generate`, one at a time (arguments are checked at the call)."""
    rng = split_stream("shapes", split, size, seed)
    return (_example(rng) for _ in range(size))

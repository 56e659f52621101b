"""Images to tensors with Pillow and torch alone (no torchvision).

Every image becomes RGB, is resized so its shorter side is `size` (bicubic) and centre-cropped
to size x size, then scaled to [0, 1]. Normalisation belongs to the image encoder (a pretrained
network knows its own mean and std), so this module has none. Unreadable or non-image files are
user errors that name the file.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from s2s.errors import UserError


@contextlib.contextmanager
def image_errors(name: str | Path):
    """Turn what decoding image `name` can raise into one line naming it.

    Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (a decompression-bomb guard) and only
    warns between one and two times that; both are refused here, as no caption model needs
    100-megapixel inputs and decoding one takes gigabytes.
    """
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except FileNotFoundError:
            raise UserError(f"image not found: {name}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise UserError(f"cannot read image {name}: {e} Resize it first.") from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise UserError(f"cannot read image {name}: "
                            f"{str(e).splitlines()[0] if str(e) else 'not an image'}") from None


def open_image(path: str | Path):
    """A PIL image from a file, or a one-line error naming it."""
    from PIL import Image

    with image_errors(path):
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")


def to_tensor(image, size: int) -> Tensor:
    """PIL image -> (3, size, size) float tensor in [0, 1]: shorter side resized, centre crop."""
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    if (width, height) != (size, size):
        resized = (max(size, round(width * scale)), max(size, round(height * scale)))
        image = image.resize(resized, Image.BICUBIC)
        left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
        image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0  # (3, H, W)


def jitter(images: Tensor, strength: float) -> Tensor:
    """Random brightness and contrast per image, each within +-strength: light augmentation that
    never changes a colour's name or an object's place (no flips: captions say "left of")."""
    b = images.size(0)
    brightness, contrast = (1 + strength * (2 * torch.rand(2, b, 1, 1, 1) - 1)).unbind(0)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return ((images - mean) * contrast + mean * brightness).clamp(0, 1)


def load_images(paths: list[str], size: int) -> Tensor:
    """(B, 3, size, size) from image files."""
    return torch.stack([to_tensor(open_image(p), size) for p in paths])

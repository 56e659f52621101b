"""Models that travel: export s2s Transformers to CTranslate2 and Hugging Face (Marian), and
import Hugging Face Marian models (the opus-mt family) as s2s runs.

Each direction uses the other side's own library and format: CTranslate2's converter API and
model specs, `transformers`' MarianMTModel / MarianTokenizer with `save_pretrained`. Those
libraries are optional extras; `need` turns their absence into one clear line.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from s2s.errors import UserError

CT2_MARKER = "s2s-export.json"  # what marks a CTranslate2 export made by s2s
EXTRAS = {"ctranslate2": "ctranslate2", "transformers": "huggingface"}


def need(package: str) -> None:
    """Raise a one-line error naming the extra to install when `package` is missing."""
    if importlib.util.find_spec(package) is None:
        raise UserError(f"this needs the {package} package: pip install 's2s[{EXTRAS[package]}]'")


def check_free(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace an existing, non-empty folder unless asked to."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"{out_dir} already exists; choose another directory or pass --overwrite")



def is_ctranslate2_export(path: Path) -> bool:
    """Whether `path` is a folder made by `s2s export --to ctranslate2`."""
    return (Path(path) / CT2_MARKER).is_file()

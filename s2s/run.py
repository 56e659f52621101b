"""A run directory: everything needed to use a trained model, and nothing else.

`runs/NAME/` holds the resolved `recipe.yaml`, the SentencePiece models in `tokenizer/`,
`checkpoints/` and `metrics.jsonl`; `Run.open(path)` rebuilds the model from these alone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from s2s.checkpoint import load_weights, resolve_checkpoint
from s2s.data.tokenizer import Tokenizer
from s2s.errors import UserError
from s2s.models import Seq2Seq, build_model
from s2s.packed import pack_linears
from s2s.quantize import quantize_int8
from s2s.recipe import Recipe, recipe_from_dict
from s2s.recipe_files import read_yaml

RECIPE_FILE, TOKENIZER_DIR, CHECKPOINT_DIR, METRICS_FILE = (
    "recipe.yaml", "tokenizer", "checkpoints", "metrics.jsonl")


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls are fast here: CUDA with bf16 support, or a CPU with AMX tiles."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch >= 2.3
    if amx is None:
        amx = getattr(torch._C._cpu, "_is_amx_tile_supported", lambda: False)
    return bool(amx())


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if precision not in ("fp32", "bf16"):
        raise UserError(f"train.precision must be auto, fp32 or bf16, not {precision!r}")
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast (fp32 master weights) or a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_run_recipe(run_dir: Path) -> Recipe:
    path = Path(run_dir) / RECIPE_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no {RECIPE_FILE}); "
                        "train one with `s2s train RECIPE`")
    return recipe_from_dict(read_yaml(path))


@dataclass
class Run:
    dir: Path
    recipe: Recipe
    tokenizer: Tokenizer
    model: Seq2Seq | None  # None when only another engine (CTranslate2) holds the model
    device: torch.device
    precision: str
    checkpoint: Path
    engine: Any = None  # decodes instead of s2s's search when set: `search(sources, opts, decode)`

    @classmethod
    def open(cls, run_dir: str | Path, checkpoint: str = "best", device: str = "auto",
             precision: str | None = None, quantize: str | None = None) -> "Run":
        """Rebuild a run's model. `precision` (auto, fp32, bf16) overrides the recipe's
        train.precision for decoding; `quantize="int8"` decodes with an int8 copy (CPU only)."""
        run_dir = Path(run_dir)
        recipe = load_run_recipe(run_dir)
        tokenizer = Tokenizer.load(run_dir / TOKENIZER_DIR)
        model = build_model(recipe.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
        where = resolve_checkpoint(run_dir, checkpoint)
        load_weights(model, where)
        dev = pick_device(device)
        model.to(dev).eval()
        precision = resolve_precision(precision or recipe.train.precision, dev)
        if quantize not in (None, "none", "int8"):
            raise UserError(f"--quantize must be none or int8, not {quantize!r}")
        if quantize == "int8":
            model, precision = quantize_int8(model), "fp32"  # int8 matmuls, fp32 elsewhere
        elif dev.type == "cpu" and precision == "fp32":
            pack_linears(model)  # oneDNN-packed weights: faster at decoding's row counts
        return cls(run_dir, recipe, tokenizer, model, dev, precision, where)

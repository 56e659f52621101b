"""Recipes: one YAML file -> frozen dataclasses, with `--set a.b=c` overrides.

A recipe has the sections `data`, `tokenizer`, `model`, `train` and `decode`. Every key is checked
against its dataclass: a misspelt key is an error that names it and suggests the closest one, and a
value of the wrong type is an error that names the key. `model.arch` picks the model's dataclass
(each architecture registers its own). The resolved recipe is saved in the run directory, so a run
directory alone is enough to translate, evaluate or inspect.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from s2s.errors import UserError
from s2s.registry import did_you_mean


@dataclass(frozen=True)
class SplitNames:
    train: str = "train"
    validation: str = "validation"
    test: str = "test"


@dataclass(frozen=True)
class SplitSizes:
    """How many examples a built-in generator makes per split."""

    train: int = 50_000
    validation: int = 1_000
    test: int = 1_000


@dataclass(frozen=True)
class DataConfig:
    dataset: str = ""  # hub id ("bentrevett/multi30k") or built-in generator ("dates", "shapes")
    path: str | None = None  # a local folder or file; takes precedence over `dataset`
    config: str | None = None  # the hub dataset's configuration name, if it has several
    src: str = "source"  # source column; dotted for nested columns ("translation.de")
    tgt: str = "target"  # target column
    splits: SplitNames = field(default_factory=SplitNames)
    sizes: SplitSizes = field(default_factory=SplitSizes)  # generators only
    seed: int = 0  # generators only
    max_src_len: int = 200  # training pairs longer than this (in tokens) are dropped
    max_tgt_len: int = 200
    clean_captions: bool = False  # captioning: lower-case and drop punctuation (refs too)


@dataclass(frozen=True)
class TokenizerConfig:
    type: str = "unigram"  # SentencePiece model: unigram | bpe | char | word
    vocab_size: int = 8000
    joint: bool = True  # one vocabulary for source and target (needed to share embeddings)
    character_coverage: float = 1.0
    max_sentences: int = 1_000_000  # sentences sampled to train SentencePiece
    model: str | None = None  # an existing SentencePiece .model to use (joint, or the source side)
    tgt_model: str | None = None  # with joint: false, the target side's existing .model


@dataclass(frozen=True)
class TrainConfig:
    batch_tokens: int = 4096  # padded tokens per batch, max(source, target) per sentence
    accumulate: int = 1  # batches per optimiser step
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    schedule: str = "inverse_sqrt"  # constant | inverse_sqrt | plateau
    warmup_steps: int = 0
    plateau_factor: float = 0.5  # plateau: multiply the lr by this ...
    plateau_patience: int = 1  # ... after this many validations without improvement
    min_lr: float = 0.0
    cooldown_steps: int = 0  # the last N steps before max_steps take the lr linearly to min_lr
    clip_norm: float = 1.0  # 0 = no clipping
    label_smoothing: float = 0.1
    precision: str = "auto"  # auto | fp32 | bf16 (auto: bf16 where the hardware is fast at it)
    max_steps: int = 0  # 0 = no limit; training stops at the first limit reached
    max_epochs: int = 0
    max_minutes: float = 0.0  # wall-clock budget, data preparation and validation included
    eval_every: int = 500  # steps between validations; 0 = once per epoch
    eval_metric: str = "bleu"  # bleu | loss | exact: which validation score picks `best`
    patience: int = 0  # stop after this many validations without improvement; 0 = never
    log_every: int = 50
    keep_checkpoints: int = 5  # step checkpoints kept (for `s2s average`), besides `best`
    # captioning: from this step on, self-critical training (CIDEr-D reward, s2s.self_critical)
    self_critical_from: int = 0  # 0 = cross-entropy throughout
    self_critical_samples: int = 5  # captions sampled per image (each one's baseline: the others)
    self_critical_images: int = 32  # images per batch
    self_critical_lr: float = 5e-5  # constant lr of the self-critical steps
    seed: int = 1
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default


@dataclass(frozen=True)
class DecodeConfig:
    beam: int = 5
    length_penalty: float = 1.0  # hypothesis score = sum of log-probs / length ** length_penalty
    max_len_a: float = 1.5  # at most a * source length + b output tokens
    max_len_b: int = 10
    batch_size: int = 64  # sentences per batch


@dataclass(frozen=True)
class Recipe:
    name: str
    model: Any  # the dataclass registered for `model.arch`
    description: str = ""
    task: str = "translation"  # translation | captioning
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


# ------------------------------------------------------------------------------------------------
# finding recipes


def packaged_recipes() -> dict[str, Path]:
    """Recipes shipped with s2s (the repository's `recipes/`, also inside an installed wheel)."""
    root = importlib.resources.files("s2s.recipes")
    return {Path(p.name).stem: Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml")}


def find_recipe(name: str) -> Path:
    """A path to a YAML file, `./recipes/NAME.yaml`, or a packaged recipe NAME."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"recipe file not found: {name}")
        return path
    local = Path("recipes") / f"{name}.yaml"
    if local.is_file():
        return local
    shipped = packaged_recipes()
    if name not in shipped:
        raise UserError(f"unknown recipe {name!r}{did_you_mean(name, shipped)}; "
                        "`s2s recipes` lists them, or pass a path to a .yaml file")
    return shipped[name]


def read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        raise UserError(yaml_error(path, e)) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"cannot read recipe {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"recipe {path} must be a YAML mapping of sections")
    return raw


def yaml_error(path: Path, error: yaml.MarkedYAMLError) -> str:
    """'FILE, line L, column C: problem (while parsing ... from line K)': where to look."""
    mark = error.problem_mark or error.context_mark
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
    text = f"recipe {where}: {error.problem or error.context}"
    if error.context and error.problem and error.context_mark:
        text += f" ({error.context} from line {error.context_mark.line + 1})"
    return text


def load_recipe(name_or_path: str, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read a recipe by name or path and apply `key.path=value` overrides."""
    path = find_recipe(name_or_path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    return recipe_from_dict(apply_overrides(raw, overrides))


# ------------------------------------------------------------------------------------------------
# overrides, parsing and saving


def apply_overrides(raw: dict, overrides) -> dict:
    """Set `a.b.c=value` (value parsed as YAML) in a nested dict, returning a new dict."""
    raw = yaml.safe_load(yaml.safe_dump(raw))  # deep copy
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r} must look like key.path=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {key!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return raw


def recipe_from_dict(raw: dict) -> Recipe:
    from s2s.models import MODEL_CONFIGS  # the model modules register their dataclasses

    model = raw.get("model")
    if not isinstance(model, dict) or "arch" not in model:
        raise UserError(f"recipe needs model.arch (one of: {', '.join(MODEL_CONFIGS.names())})")
    raw = {**raw, "model": parse_dataclass(MODEL_CONFIGS.get(model["arch"]), model, "model")}
    return parse_dataclass(Recipe, raw, "")


def parse_dataclass(cls, raw: dict, where: str):
    """Build dataclass `cls` from a mapping, rejecting unknown keys and ill-typed values."""
    if dataclasses.is_dataclass(raw):
        return raw
    if not isinstance(raw, dict):
        raise UserError(f"{where or 'recipe'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    values = {}
    by_type = {f.name: f.metadata["by_type"] for f in fields(cls) if "by_type" in f.metadata}
    for key, value in raw.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise UserError(f"unknown recipe key {dotted!r}{did_you_mean(str(key), names)}")
        if key in by_type:  # a section whose dataclass is chosen by its `type` key
            values[key] = parse_by_type(by_type[key], value, dotted)
        else:
            values[key] = coerce(value, hints[key], dotted)
    try:
        return cls(**values)
    except TypeError as e:  # a required key is missing
        raise UserError(f"{where or 'recipe'}: {e}") from None


def parse_by_type(registry, value, where: str):
    """Parse a section with the dataclass that `registry` holds for its `type` value."""
    if dataclasses.is_dataclass(value):
        return value
    if not isinstance(value, dict) or "type" not in value:
        raise UserError(f"{where} needs a type (one of: {', '.join(registry.names())})")
    return parse_dataclass(registry.get(value["type"]), value, where)


def coerce(value, hint, where: str):
    """Check (and gently convert: 1 -> 1.0, "1e-3" -> 0.001) a value against a type hint."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        return coerce(value, next(o for o in options if o is not type(None)), where)
    if dataclasses.is_dataclass(hint):
        return parse_dataclass(hint, value, where)
    if origin is tuple and typing.get_args(hint)[1:] == (Ellipsis,):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"recipe key {where!r} needs a list, got {value!r}")
        return tuple(coerce(v, typing.get_args(hint)[0], where) for v in value)
    if origin is tuple:
        items = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise UserError(f"recipe key {where!r} needs a list of {len(items)} values, got {value!r}")
        return tuple(coerce(v, t, where) for v, t in zip(value, items))
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise UserError(f"recipe key {where!r} needs a {getattr(hint, '__name__', hint)}, got {value!r}")


def recipe_to_dict(recipe: Recipe) -> dict:
    def plain(x):
        if dataclasses.is_dataclass(x):
            return {f.name: plain(getattr(x, f.name)) for f in fields(x)}
        return list(x) if isinstance(x, tuple) else x

    return plain(recipe)


def save_recipe(recipe: Recipe, path: Path) -> None:
    from s2s.checkpoint import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))


def list_recipes() -> list[tuple[str, str, str, str, str]]:
    """(name, task, model, attention, dataset) for every packaged recipe."""
    rows = []
    for name, path in sorted(packaged_recipes().items()):
        r = load_recipe(str(path))
        rows.append((name, r.task, r.model.arch, attention_summary(r.model),
                     r.data.dataset or r.data.path or ""))
    return rows


def attention_summary(model) -> str:
    """'additive', 'multihead', 'additive + cbam + stn' ... for the recipe table."""
    decoder = getattr(model, "decoder", model)
    text = decoder.attention.type if hasattr(decoder, "attention") else "multihead"
    encoder = getattr(model, "encoder", None)
    if encoder is not None and encoder.attention != "none":
        text += f" + {encoder.attention}"
    if encoder is not None and encoder.spatial_transformer:
        text += " + stn"
    return text

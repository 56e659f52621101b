"""Recipes: one YAML file -> frozen, typed dataclasses, with `--set a.b=c` overrides.

A recipe has the sections `data`, `tokenizer`, `model`, `train` and `decode`. Every value is
checked when the recipe is loaded, before anything is written to a run directory:
- a misspelt key is an error that names it and suggests the closest one;
- a value of the wrong type, out of range (`PositiveInt`, `Probability` ... from `s2s.typed`) or
  not among a field's choices (`Literal[...]`) is an error that names the key;
- sections chosen by name (`model.arch`, `attention.type`, `decoder.type`, `encoder.type`) are
  parsed with the settings class the registry holds for that name;
- rules between fields live in one place, `check_recipe`.
The resolved recipe is saved in the run directory, so a run directory alone is enough to
translate, evaluate or inspect.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

import yaml

from s2s.errors import UserError
from s2s.files import atomic_write_text
from s2s.models import MODELS
from s2s.recipe_files import find_recipe, read_yaml
from s2s.registry import did_you_mean
from s2s.typed import (NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt,
                       Probability, Range)


@dataclass(frozen=True)
class SplitNames:
    train: str = "train"
    validation: str = "validation"
    test: str = "test"


@dataclass(frozen=True)
class SplitSizes:
    """How many examples a built-in generator makes per split."""

    train: PositiveInt = 50_000
    validation: PositiveInt = 1_000
    test: PositiveInt = 1_000


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
    max_src_len: PositiveInt = 200  # training pairs longer than this (in tokens) are dropped
    max_tgt_len: PositiveInt = 200
    clean_captions: bool = False  # captioning: lower-case and drop punctuation (refs too)


@dataclass(frozen=True)
class TokenizerConfig:
    type: Literal["unigram", "bpe", "char", "word"] = "unigram"  # the SentencePiece model
    vocab_size: Annotated[int, Range(low=8)] = 8000
    joint: bool = True  # one vocabulary for source and target (needed to share embeddings)
    character_coverage: Annotated[float, Range(low=0, high=1, open_low=True)] = 1.0
    max_sentences: PositiveInt = 1_000_000  # sentences sampled to train SentencePiece
    model: str | None = None  # an existing SentencePiece .model to use (joint, or the source side)
    tgt_model: str | None = None  # with joint: false, the target side's existing .model


@dataclass(frozen=True)
class TrainConfig:
    batch_tokens: PositiveInt = 4096  # padded tokens per batch, max(source, target) per sentence
    accumulate: PositiveInt = 1  # batches per optimiser step
    lr: PositiveFloat = 1e-3
    betas: tuple[Annotated[float, Range(low=0, high=1, open_high=True)],
                 Annotated[float, Range(low=0, high=1, open_high=True)]] = (0.9, 0.98)
    weight_decay: NonNegativeFloat = 0.0
    schedule: Literal["constant", "inverse_sqrt", "plateau"] = "inverse_sqrt"
    warmup_steps: NonNegativeInt = 0
    plateau_factor: Annotated[float, Range(low=0, high=1, open_low=True)] = 0.5  # plateau: lr *= this ...
    plateau_patience: PositiveInt = 1  # ... after this many validations without improvement
    min_lr: NonNegativeFloat = 0.0
    cooldown_steps: NonNegativeInt = 0  # the run's last N steps (by max_steps or max_minutes) take the lr linearly to min_lr
    clip_norm: NonNegativeFloat = 1.0  # 0 = no clipping
    label_smoothing: Probability = 0.1
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where the hardware is fast at it
    max_steps: NonNegativeInt = 0  # 0 = no limit; training stops at the first limit reached
    max_epochs: NonNegativeInt = 0
    max_minutes: NonNegativeFloat = 0.0  # wall-clock budget, data preparation and validation included
    eval_every: NonNegativeInt = 500  # steps between validations; 0 = once per epoch
    eval_metric: Literal["bleu", "loss", "exact"] = "bleu"  # which validation score picks `best`
    patience: NonNegativeInt = 0  # stop after this many validations without improvement; 0 = never
    log_every: PositiveInt = 50
    keep_checkpoints: PositiveInt = 5  # step checkpoints kept (for `s2s average`), besides `best`
    # captioning: from this step on, self-critical training (CIDEr-D reward, s2s.self_critical)
    self_critical_from: NonNegativeInt = 0  # 0 = cross-entropy throughout
    self_critical_samples: Annotated[int, Range(low=2)] = 5  # per image; each one's baseline: the others
    self_critical_images: PositiveInt = 32  # images per batch
    self_critical_lr: PositiveFloat = 5e-5  # constant lr of the self-critical steps
    seed: int = 1
    threads: NonNegativeInt = 0  # torch intra-op threads; 0 = leave torch's default
    tensorboard: bool = False  # also write the metrics as TensorBoard scalars into RUN/tensorboard/


@dataclass(frozen=True)
class DecodeConfig:
    beam: PositiveInt = 5
    length_penalty: NonNegativeFloat = 1.0  # hypothesis score = sum of log-probs / length ** this
    coverage_penalty: NonNegativeFloat = 0.0  # beta of Wu et al. 2016 (coverage attention only)
    max_len_a: NonNegativeFloat = 1.5  # at most a * source length + b output tokens
    max_len_b: NonNegativeInt = 10
    batch_size: PositiveInt = 64  # sentences per batch


@dataclass(frozen=True)
class Recipe:
    name: str
    model: Any = field(metadata={"by_type": MODELS, "key": "arch"})  # the class's Config
    description: str = ""
    task: Literal["translation", "captioning"] = "translation"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


def load_recipe(name_or_path: str, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read a recipe by name or path and apply `key.path=value` overrides."""
    path = find_recipe(name_or_path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    return recipe_from_dict(apply_overrides(raw, overrides))


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
    """Parse and check a whole recipe."""
    recipe = parse_dataclass(Recipe, raw, "")
    check_recipe(recipe)
    return recipe


# ------------------------------------------------------------------------------------------------
# rules between fields (the one place for them)


def check_recipe(recipe: Recipe) -> None:
    m, t, tok = recipe.model, recipe.train, recipe.tokenizer
    if (recipe.task == "captioning") != (m.arch == "captioner"):
        raise UserError(f"task {recipe.task!r} needs model.arch "
                        f"{'captioner' if recipe.task == 'captioning' else 'rnn or transformer'}, "
                        f"not {m.arch!r}")
    if t.cooldown_steps and t.cooldown_steps > t.max_steps and not t.max_minutes:
        raise UserError(f"train.cooldown_steps ({t.cooldown_steps}) needs train.max_steps at least "
                        f"as large (it is {t.max_steps}) or a time budget, train.max_minutes")
    if t.self_critical_from and recipe.task != "captioning":
        raise UserError("train.self_critical_from applies to captioning recipes only")
    if tok.tgt_model and not tok.model:
        raise UserError("tokenizer.tgt_model needs tokenizer.model (the source side) too")
    if tok.joint and tok.tgt_model:
        raise UserError("tokenizer.tgt_model needs tokenizer.joint: false "
                        "(a joint vocabulary is one model: tokenizer.model)")
    if tok.model and not tok.joint and not tok.tgt_model:
        raise UserError("tokenizer.joint is false: set tokenizer.tgt_model to the target "
                        "side's model too, or use joint: true")
    if getattr(m, "share_embeddings", False) and not tok.joint:
        raise UserError("model.share_embeddings needs a joint vocabulary (tokenizer.joint: true)")
    if getattr(m, "bidirectional", False) and m.hidden_dim % 2:
        raise UserError(f"model.hidden_dim ({m.hidden_dim}) must be even for a bidirectional encoder")
    for where, section in (("model", m), ("model.decoder", getattr(m, "decoder", None)),
                           ("model.encoder", getattr(m, "encoder", None))):
        if hasattr(section, "d_model") and section.d_model % section.heads:
            raise UserError(f"{where}.d_model ({section.d_model}) must be divisible by "
                            f"{where}.heads ({section.heads})")
        cross = getattr(section, "cross_attention", None)
        if cross is not None and cross.type == "none":
            raise UserError(f"{where}.cross_attention cannot be none: the decoder reads the "
                            "source through it")
        heads = getattr(getattr(section, "attention", None), "heads", None)
        if heads and section.hidden_dim % heads:
            raise UserError(f"{where}.hidden_dim ({section.hidden_dim}) must be divisible by "
                            f"{where}.attention.heads ({heads})")


# ------------------------------------------------------------------------------------------------
# parsing


def parse_dataclass(cls, raw: dict, where: str):
    """Build dataclass `cls` from a mapping, rejecting unknown keys and ill-typed values."""
    if dataclasses.is_dataclass(raw):
        return raw
    if not isinstance(raw, dict):
        raise UserError(f"{where or 'recipe'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in fields(cls)]
    by_type = {f.name: f.metadata for f in fields(cls) if "by_type" in f.metadata}
    values = {}
    for key, value in raw.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise UserError(f"unknown recipe key {dotted!r}{did_you_mean(str(key), names)}")
        if key in by_type:  # a section whose settings class is chosen by its `type` key
            meta = by_type[key]
            values[key] = parse_by_type(meta["by_type"], value, dotted, meta.get("key", "type"))
        else:
            values[key] = coerce(value, hints[key], dotted)
    try:
        return cls(**values)
    except (TypeError, UserError) as e:  # a required key is missing, or a rule of the section
        raise UserError(f"{where or 'recipe'}: {e}") from None


def parse_by_type(registry, value, where: str, key: str = "type"):
    """Parse a section with the settings class that `registry` holds for its `key` value."""
    if value is None or dataclasses.is_dataclass(value):
        return value
    if not isinstance(value, dict) or key not in value:
        raise UserError(f"{where} needs {'an' if key[0] in 'aeiou' else 'a'} {key} "
                        f"(one of: {', '.join(registry.names())})")
    name = value[key]
    if not isinstance(name, str) or name not in registry:
        raise UserError(f"unknown {where}.{key} {name!r}{did_you_mean(str(name), registry.names())}; "
                        f"choose one of: {', '.join(registry.names())}")
    return parse_dataclass(registry.get(name).Config, value, where)


def coerce(value, hint, where: str):
    """Check (and gently convert: 1 -> 1.0, "1e-3" -> 0.001) a value against a type hint."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *marks = typing.get_args(hint)
        value = coerce(value, base, where)
        for mark in marks:
            problem = mark.check(value) if isinstance(mark, Range) else None
            if problem:
                raise UserError(f"recipe key {where!r} must be {problem}, got {value!r}")
        return value
    if origin is Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return value
        raise UserError(f"recipe key {where!r} must be one of {', '.join(map(str, choices))}; "
                        f"not {value!r}{did_you_mean(str(value), [str(c) for c in choices])}")
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


# ------------------------------------------------------------------------------------------------
# saving


def recipe_to_dict(recipe: Recipe) -> dict:
    """Plain dicts and lists; a section's `arch` or `type` comes first, as people write it."""
    def plain(x):
        if dataclasses.is_dataclass(x):
            names = sorted((f.name for f in fields(x)), key=lambda n: n not in ("arch", "type"))
            return {n: plain(getattr(x, n)) for n in names}
        return list(x) if isinstance(x, tuple) else x

    return plain(recipe)


def save_recipe(recipe: Recipe, path) -> None:
    atomic_write_text(path, yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))

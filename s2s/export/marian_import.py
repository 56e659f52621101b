"""Import a Hugging Face Marian model (the opus-mt layout) as an s2s run directory.

Reads `config.json` (through transformers' MarianConfig, so missing keys get Marian's own
defaults), the weights (`model.safetensors`, or `pytorch_model.bin` through
`torch.load(weights_only=True)`: tensors only, never arbitrary pickled objects), `source.spm`,
`target.spm`, `vocab.json` (and `target_vocab.json` for models with separate vocabularies).

s2s reserves ids 0-3 for padding, unknown, start and end of sentence everywhere; Marian numbers
its vocabulary its own way ("</s>" 0, "<unk>" 1, ... "<pad>" last) and starts decoding from the
padding token. The import renumbers the vocabulary instead of teaching s2s another layout:
embedding and output rows are permuted so that the pad, unknown, start and end rows come first.
As Marian starts from the pad row, the start row is a copy of it, so the vocabulary grows by
one. That extra row must never be predicted and must not take probability from the others: its
output bias is -1e4, which makes its probability exactly 0 in float32 (and s2s's search never
emits it). A model with a start token of its own (one exported by s2s) keeps its rows as they are.
The tokenizer folder keeps the SentencePiece models with the renumbered vocabulary
(`s2s.data.mapped_tokenizer`). Features are reordered for s2s's position layout
(`s2s.export.marian_layout`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from s2s.checkpoint import save_checkpoint, set_pointer, step_name
from s2s.data.mapped_tokenizer import (OPTIONS, SOURCE_SPM, TARGET_SPM, TARGET_VOCAB, VOCAB,
                                       load_processor, read_vocab)
from s2s.errors import UserError
from s2s.export.marian_layout import layer_names, to_s2s_order
from s2s.files import atomic_directory
from s2s.models import build_model
from s2s.recipe import apply_overrides, recipe_from_dict, save_recipe
from s2s.run import CHECKPOINT_DIR, RECIPE_FILE, TOKENIZER_DIR
from s2s.vocab import BOS, PAD

ABSENT_LOGIT = -1e4  # output bias of the added start row: exp(-1e4) underflows to exactly 0
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "swish": "swish", "silu": "swish"}
START_PIECES = ("<s>", "<start>", "<s2s-start>")


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} must hold a JSON object")
    return value


def read_config(hf_dir: Path):
    """MarianConfig of `hf_dir`; a folder that is not a Marian checkpoint is a one-line error."""
    from transformers import MarianConfig

    path = hf_dir / "config.json"
    if not path.is_file():
        raise UserError(f"{hf_dir} is not a Hugging Face model directory (no config.json)")
    raw = read_json(path)
    if raw.get("model_type") != "marian":
        raise UserError(f"{path}: model_type is {raw.get('model_type')!r}, not 'marian'; only "
                        "Marian models (opus-mt) can be imported")
    try:
        return MarianConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise UserError(f"{path} is not a valid Marian configuration: {e}") from None


def read_weights(hf_dir: Path) -> dict[str, Tensor]:
    """Tensors by name, from safetensors or a weights-only torch pickle; nothing else unpickled."""
    safetensors, pickled = hf_dir / "model.safetensors", hf_dir / "pytorch_model.bin"
    if safetensors.is_file():
        try:
            tensors = load_file(str(safetensors))
        except (SafetensorError, OSError) as e:
            raise UserError(f"{safetensors} is corrupt or not a safetensors file ({e})") from None
    elif pickled.is_file():
        try:
            with warnings.catch_warnings():  # torch warns about the pickle protocol first
                warnings.simplefilter("ignore")
                tensors = torch.load(pickled, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling errors come in many types; all mean "refused"
            first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
            raise UserError(f"{pickled} is not a plain file of tensors; refusing to unpickle it "
                            f"({type(e).__name__}: {first})") from None
        if not isinstance(tensors, dict) or not all(isinstance(v, Tensor) for v in tensors.values()):
            raise UserError(f"{pickled} does not hold a dictionary of tensors")
    else:
        raise UserError(f"{hf_dir} has no weights (model.safetensors or pytorch_model.bin)")
    if not any(k.startswith("model.") for k in tensors):  # saved from MarianModel, not MarianMTModel
        tensors = {(k if k in ("final_logits_bias", "lm_head.weight") else f"model.{k}"): v
                   for k, v in tensors.items()}
    return {k: v.float() for k, v in tensors.items()}


def tensor(weights: dict[str, Tensor], name: str, hf_dir: Path) -> Tensor:
    if name not in weights:
        raise UserError(f"{hf_dir}: the weights have no {name!r}; is this a MarianMTModel checkpoint?")
    return weights[name]


def s2s_order(pad: int, unk: int, start: int, eos: int, size: int) -> list[int]:
    """Marian id of each s2s id: pad, unknown, start, end, then the rest in Marian's order. When
    decoding starts from the pad token (Marian's way) its row appears twice."""
    return [pad, unk, start, eos] + [i for i in range(size) if i not in (pad, unk, start, eos)]


def renumbered(vocab: dict[str, int], order: list[int]) -> dict[str, int]:
    """{piece: s2s id}; a start row that copies the pad row gets a name of its own."""
    pieces = {i: p for p, i in vocab.items()}
    names = [pieces[old] for old in order]
    if order[BOS] == order[PAD]:
        names[BOS] = next(p for p in START_PIECES if p not in vocab)
    return {name: new for new, name in enumerate(names)}


def special_id(vocab: dict[str, int], piece: str, path: Path) -> int:
    if piece not in vocab:
        raise UserError(f"{path} has no {piece!r} entry; it does not match a Marian model")
    return vocab[piece]


def first(value) -> int:
    return value[0] if isinstance(value, (list, tuple)) else value


def model_settings(config, hf_dir: Path) -> dict:
    """The recipe's `model` section for this Marian configuration (one line per mismatch)."""
    where = hf_dir / "config.json"
    pairs = (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim"))
    for a, b in pairs:
        if getattr(config, a) != getattr(config, b):
            raise UserError(f"{where}: {a} ({getattr(config, a)}) differs from {b} "
                            f"({getattr(config, b)}); s2s Transformers use one value for both")
    if config.activation_function not in ACTIVATIONS:
        raise UserError(f"{where}: activation_function {config.activation_function!r} is not one of "
                        f"{', '.join(ACTIVATIONS)}")
    return {"arch": "transformer", "d_model": config.d_model, "heads": config.encoder_attention_heads,
            "ffn_dim": config.encoder_ffn_dim, "enc_layers": config.encoder_layers,
            "dec_layers": config.decoder_layers, "dropout": float(config.dropout),
            "attn_dropout": float(config.attention_dropout),
            "act_dropout": float(config.activation_dropout),
            "activation": ACTIVATIONS[config.activation_function], "norm": "post",
            "positions": "sinusoidal", "max_positions": config.max_position_embeddings,
            "scale_embeddings": bool(config.scale_embedding),
            "tie_output": bool(config.tie_word_embeddings), "output_bias": True,
            "share_embeddings": bool(config.share_encoder_decoder_embeddings)}


def decode_settings(hf_dir: Path) -> dict:
    """Beam size and length penalty from generation_config.json, when the model has one."""
    path = hf_dir / "generation_config.json"
    generation = read_json(path) if path.is_file() else {}
    settings = {}
    if isinstance(generation.get("num_beams"), int) and generation["num_beams"] >= 1:
        settings["beam"] = generation["num_beams"]
    if isinstance(generation.get("length_penalty"), (int, float)) and generation["length_penalty"] >= 0:
        settings["length_penalty"] = float(generation["length_penalty"])
    return settings


def import_marian(hf_dir: Path, run_dir: Path, overrides: tuple[str, ...] = ()) -> Path:
    """Write `run_dir` (atomically) as an s2s run equivalent to the Marian model in `hf_dir`."""
    hf_dir, run_dir = Path(hf_dir), Path(run_dir)
    if not hf_dir.is_dir():
        raise UserError(f"{hf_dir} is not a directory")
    config = read_config(hf_dir)
    for name in (SOURCE_SPM, TARGET_SPM, VOCAB):
        if not (hf_dir / name).is_file():
            raise UserError(f"{hf_dir} has no {name}; a Marian model directory has source.spm, "
                            "target.spm and vocab.json")
    src_spm, tgt_spm = load_processor(hf_dir / SOURCE_SPM), load_processor(hf_dir / TARGET_SPM)
    tok_config = read_json(hf_dir / "tokenizer_config.json") if (hf_dir / "tokenizer_config.json").is_file() else {}
    separate = bool(tok_config.get("separate_vocabs", False))
    src_path = hf_dir / VOCAB
    tgt_path = hf_dir / TARGET_VOCAB if separate else src_path
    if separate and not tgt_path.is_file():
        raise UserError(f"{hf_dir / 'tokenizer_config.json'} says separate_vocabs but there is no "
                        f"{TARGET_VOCAB}")
    src_vocab = read_vocab(src_path)
    tgt_vocab = read_vocab(tgt_path) if separate else src_vocab
    weights = read_weights(hf_dir)

    shared = bool(config.share_encoder_decoder_embeddings)
    src_emb = tensor(weights, "model.shared.weight" if shared and "model.shared.weight" in weights
                     else "model.encoder.embed_tokens.weight", hf_dir)
    tgt_emb = src_emb if shared else tensor(weights, "model.decoder.embed_tokens.weight", hf_dir)
    for vocab, path, table, side in ((src_vocab, src_path, src_emb, "source"),
                                     (tgt_vocab, tgt_path, tgt_emb, "target")):
        if len(vocab) != table.size(0):
            raise UserError(f"{path} has {len(vocab)} entries but the model's {side} embeddings "
                            f"have {table.size(0)} rows; the vocabulary does not match the weights")
    if shared and separate:
        raise UserError(f"{hf_dir}: shared embeddings (config.json) but separate vocabularies "
                        "(tokenizer_config.json)")

    eos, pad, start = first(config.eos_token_id), config.pad_token_id, config.decoder_start_token_id
    if special_id(tgt_vocab, "</s>", tgt_path) != eos:
        raise UserError(f"{tgt_path} gives '</s>' id {tgt_vocab['</s>']} but config.json "
                        f"eos_token_id is {eos}; the vocabulary does not match the model")
    for what, value in (("pad_token_id", pad), ("decoder_start_token_id", start)):
        if value is None or not 0 <= value < len(tgt_vocab):
            raise UserError(f"{hf_dir / 'config.json'}: {what} {value} is outside the target vocabulary")
    tgt_order = s2s_order(pad, special_id(tgt_vocab, "<unk>", tgt_path), start, eos, len(tgt_vocab))
    src_order = tgt_order
    if separate:  # the source side's start row is never read; it follows the target's choice
        src_pad = special_id(src_vocab, "<pad>", src_path)
        start_piece = {i: p for p, i in tgt_vocab.items()}[start]
        src_start = src_vocab.get(start_piece, src_pad) if start != pad else src_pad
        src_order = s2s_order(src_pad, special_id(src_vocab, "<unk>", src_path), src_start,
                              special_id(src_vocab, "</s>", src_path), len(src_vocab))

    settings = model_settings(config, hf_dir)
    d = settings["d_model"]
    ours: dict[str, Tensor] = {}
    for our_name, their_name in layer_names(settings["enc_layers"], settings["dec_layers"]).items():
        for param in ("weight", "bias"):
            name = f"{their_name}.{param}"
            ours[f"{our_name}.{param}"] = to_s2s_order(name, tensor(weights, name, hf_dir), d)
    embed = lambda name, t, order: to_s2s_order(name, t, d)[order]  # noqa: E731
    ours["src_embed.weight"] = embed("model.shared.weight", src_emb, src_order)
    ours["decoder.embed.weight"] = (ours["src_embed.weight"] if shared
                                    else embed("model.decoder.embed_tokens.weight", tgt_emb, tgt_order))
    output = tgt_emb if config.tie_word_embeddings else tensor(weights, "lm_head.weight", hf_dir)
    ours["decoder.generator.weight"] = (ours["decoder.embed.weight"] if config.tie_word_embeddings
                                        else embed("lm_head.weight", output, tgt_order))
    bias = weights.get("final_logits_bias", torch.zeros(1, len(tgt_vocab)))[0][tgt_order].clone()
    if start == pad:  # the copied row is an input only: it must take no probability
        bias[BOS] = ABSENT_LOGIT
    ours["decoder.generator.bias"] = bias

    raw = {"name": hf_dir.name,
           "description": f"Imported from the Hugging Face Marian model {hf_dir.name}",
           "task": "translation",
           "tokenizer": {"vocab_size": max(len(src_order), 8), "joint": not separate},
           "model": settings, "decode": decode_settings(hf_dir)}
    recipe = recipe_from_dict(apply_overrides(raw, overrides))
    model = build_model(recipe.model, len(src_order), len(tgt_order))
    model.load_state_dict({k: v.contiguous() for k, v in ours.items()}, strict=True)

    src_new = renumbered(src_vocab, src_order)
    source_eos = bool(getattr(config, "s2s_source_eos", True))
    with atomic_directory(run_dir) as tmp:
        save_recipe(recipe, tmp / RECIPE_FILE)
        tok = tmp / TOKENIZER_DIR
        tok.mkdir()
        (tok / SOURCE_SPM).write_bytes(src_spm.serialized_model_proto())
        (tok / TARGET_SPM).write_bytes(tgt_spm.serialized_model_proto())
        (tok / VOCAB).write_text(json.dumps(src_new, ensure_ascii=False), encoding="utf-8")
        if separate:
            (tok / TARGET_VOCAB).write_text(json.dumps(renumbered(tgt_vocab, tgt_order),
                                                       ensure_ascii=False), encoding="utf-8")
        (tok / OPTIONS).write_text(json.dumps({"source_eos": source_eos}), encoding="utf-8")
        root = tmp / CHECKPOINT_DIR
        save_checkpoint(root, 0, model, None)
        set_pointer(root, "best", step_name(0))
    return run_dir

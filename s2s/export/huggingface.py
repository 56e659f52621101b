"""Export an s2s Transformer run as a Hugging Face Marian model directory.

The result is what opus-mt models look like: `config.json`, `generation_config.json`,
`model.safetensors` written by `MarianMTModel.save_pretrained`, and `source.spm`,
`target.spm`, `vocab.json`, `tokenizer_config.json` written by `MarianTokenizer.save_pretrained`,
so `from_pretrained` loads both. Ids are s2s's own (padding 0, unknown 1, decoding starts from
2, end of sentence 3); the generation config forbids padding and the start token as outputs,
as s2s's search does. Marian sources end with "</s>" (MarianTokenizer adds it); s2s-trained
models never saw one, so pass `add_special_tokens=False` to the tokenizer to translate exactly
as s2s does (`config.json` records this as `s2s_source_eos`).

Only runs Marian can express exactly are exported: see `check_expressible`. Positions need no
check: the feature reordering in `s2s.export.marian_layout` turns s2s's interleaved sinusoids
into Marian's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from s2s.errors import UserError
from s2s.export.marian_layout import layer_names, to_marian_order
from s2s.files import atomic_directory
from s2s.run import Run
from s2s.vocab import BOS, EOS, PAD, UNK


def check_expressible(cfg) -> None:
    """One line naming the first setting Marian cannot express, if any."""
    if cfg.arch != "transformer":
        raise UserError(f"model.arch is {cfg.arch}: Hugging Face Marian models are Transformers; "
                        "only Transformer runs export")
    if cfg.norm != "post":
        raise UserError(f"model.norm is {cfg.norm}: Marian is post-norm (LayerNorm after each "
                        "sub-layer, no final LayerNorm); train with model.norm: post to export to "
                        "Hugging Face (CTranslate2 takes both)")
    if cfg.positions != "sinusoidal":
        raise UserError(f"model.positions is {cfg.positions}: Marian's positions are fixed sinusoids")
    cross = cfg.cross_attention
    if cross is not None and (cross.type != "multihead" or cross.heads != cfg.heads):
        raise UserError(f"model.cross_attention is {cross.type}"
                        f"{f' with {cross.heads} heads' if cross.type == 'multihead' else ''}: "
                        f"Marian's cross-attention is multi-head with model.heads ({cfg.heads}) heads")
    if cfg.d_model % 2:
        raise UserError(f"model.d_model ({cfg.d_model}) must be even for sinusoidal positions")
    if cfg.share_embeddings and not cfg.tie_output:
        raise UserError("model.share_embeddings is true but model.tie_output is false: Marian ties "
                        "the output layer to shared embeddings")


def marian_config(cfg, tokenizer, decode, source_eos: bool):
    from transformers import MarianConfig

    return MarianConfig(
        vocab_size=tokenizer.src_vocab_size, decoder_vocab_size=tokenizer.tgt_vocab_size,
        d_model=cfg.d_model, encoder_layers=cfg.enc_layers, decoder_layers=cfg.dec_layers,
        encoder_attention_heads=cfg.heads, decoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn_dim, decoder_ffn_dim=cfg.ffn_dim,
        activation_function=cfg.activation, max_position_embeddings=cfg.max_positions,
        scale_embedding=cfg.scale_embeddings, share_encoder_decoder_embeddings=cfg.share_embeddings,
        tie_word_embeddings=cfg.tie_output, dropout=cfg.dropout,
        attention_dropout=cfg.attn_dropout, activation_dropout=cfg.act_dropout,
        pad_token_id=PAD, eos_token_id=EOS, bos_token_id=None, decoder_start_token_id=BOS,
        forced_eos_token_id=EOS, num_beams=decode.beam, s2s_source_eos=source_eos)


def marian_state_dict(model, cfg) -> dict[str, Tensor]:
    """The s2s model's weights under Marian's names, features in Marian's order."""
    ours = model.state_dict()
    theirs: dict[str, Tensor] = {}
    for our_name, their_name in layer_names(cfg.enc_layers, cfg.dec_layers).items():
        for param in ("weight", "bias"):
            theirs[f"{their_name}.{param}"] = ours[f"{our_name}.{param}"]
    src, tgt = ours["src_embed.weight"], ours["decoder.embed.weight"]
    if cfg.share_embeddings:
        theirs["model.shared.weight"] = src
    theirs["model.encoder.embed_tokens.weight"] = src
    theirs["model.decoder.embed_tokens.weight"] = tgt
    theirs["lm_head.weight"] = ours["decoder.generator.weight"]
    bias = ours.get("decoder.generator.bias", torch.zeros(tgt.size(0)))
    theirs["final_logits_bias"] = bias[None]  # (1, V)
    return {name: to_marian_order(name, t, cfg.d_model).contiguous() for name, t in theirs.items()}


def vocabulary(pieces: list[str]) -> dict[str, int]:
    return {piece: i for i, piece in enumerate(pieces)}


def write_tokenizer(tokenizer, out: Path, source_lang: str | None, target_lang: str | None) -> None:
    """MarianTokenizer files (source.spm, target.spm, vocab.json ...) via its save_pretrained."""
    from transformers import MarianTokenizer

    src_pieces = tokenizer.src_pieces(list(range(tokenizer.src_vocab_size)))
    tgt_pieces = tokenizer.tgt_pieces(list(range(tokenizer.tgt_vocab_size)))
    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        (staging / "source.spm").write_bytes(tokenizer.src.serialized_model_proto())
        (staging / "target.spm").write_bytes(tokenizer.tgt.serialized_model_proto())
        (staging / "vocab.json").write_text(json.dumps(vocabulary(src_pieces)), encoding="utf-8")
        separate = src_pieces != tgt_pieces
        if separate:
            (staging / "target_vocab.json").write_text(json.dumps(vocabulary(tgt_pieces)),
                                                       encoding="utf-8")
        marian = MarianTokenizer(
            str(staging / "source.spm"), str(staging / "target.spm"), str(staging / "vocab.json"),
            target_vocab_file=str(staging / "target_vocab.json") if separate else None,
            separate_vocabs=separate, source_lang=source_lang, target_lang=target_lang,
            unk_token=src_pieces[UNK], eos_token=src_pieces[EOS], pad_token=src_pieces[PAD])
        marian.save_pretrained(str(out))


def language(column: str) -> str | None:
    """'de' or 'translation.de' -> 'de' (MarianTokenizer's source_lang); other names -> None."""
    code = column.rsplit(".", 1)[-1]
    return code if code.isalpha() and len(code) in (2, 3) else None


def export_huggingface(run: Run, out_dir: Path) -> Path:
    """Write `out_dir` (atomically) as a Marian model that translates as the run does."""
    from transformers import MarianMTModel

    cfg = run.recipe.model
    check_expressible(cfg)
    source_eos = bool(getattr(run.tokenizer, "source_eos", False))
    config = marian_config(cfg, run.tokenizer, run.recipe.decode, source_eos)
    hf = MarianMTModel(config).eval()
    missing, unexpected = hf.load_state_dict(marian_state_dict(run.model.cpu(), cfg), strict=False)
    left_out = [k for k in missing if "embed_positions" not in k]  # Marian computes positions
    if left_out or unexpected:
        raise AssertionError(f"Marian weights missing {left_out}, unexpected {unexpected}")
    generation = hf.generation_config
    generation.num_beams, generation.length_penalty = run.recipe.decode.beam, run.recipe.decode.length_penalty
    generation.early_stopping = True  # s2s stops a sentence at `beam` finished hypotheses
    generation.bad_words_ids = [[PAD], [BOS]]  # s2s never outputs these
    generation.max_length = cfg.max_positions
    langs = [language(column) for column in (run.recipe.data.src, run.recipe.data.tgt)]
    with atomic_directory(Path(out_dir)) as tmp:
        hf.save_pretrained(str(tmp))
        write_tokenizer(run.tokenizer, tmp, *langs)
    return Path(out_dir)

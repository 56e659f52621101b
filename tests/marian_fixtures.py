"""Tiny models for the export/import tests, made offline: a SentencePiece model trained on a
generated corpus, random Hugging Face Marian models saved with `save_pretrained`, and random
s2s Transformer runs written as run directories."""

import json
import random
from pathlib import Path

import sentencepiece as spm
import torch

from s2s.checkpoint import save_checkpoint, set_pointer, step_name
from s2s.data.tokenizer import Tokenizer
from s2s.models import build_model
from s2s.recipe import recipe_from_dict, save_recipe

WORDS = ("the a cat dog house tree river walks sees runs small big red green old young near "
         "under over with and man woman child street garden bird sings eats reads book").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7))) for _ in range(n)]


def train_spm(prefix: Path, seed: int = 0, vocab_size: int = 60) -> Path:
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences(400, seed)),
                                   model_prefix=str(prefix), model_type="unigram",
                                   vocab_size=vocab_size, hard_vocab_limit=False, minloglevel=2)
    return prefix.with_suffix(".model")


def marian_vocab(model_file: Path, pad_last: bool = True) -> dict[str, int]:
    """Marian's numbering: '</s>' 0, '<unk>' 1, the pieces, '<pad>' last (or third)."""
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if sp.id_to_piece(i) not in ("<unk>", "<s>", "</s>")]
    order = ["</s>", "<unk>"] + (pieces + ["<pad>"] if pad_last else ["<pad>"] + pieces)
    return {p: i for i, p in enumerate(order)}


def make_marian(folder: Path, separate: bool = False, seed: int = 0, eos_bias: float = 1.5,
                **overrides) -> Path:
    """A random MarianMTModel with a random final_logits_bias (raised for "</s>", so that beams
    end before their length budget), and its MarianTokenizer files, as opus-mt ships them."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder.mkdir(parents=True)
    src_spm = train_spm(folder / "src", seed)
    tgt_spm = train_spm(folder / "tgt", seed + 1, vocab_size=50) if separate else src_spm
    src_vocab = marian_vocab(src_spm, pad_last=not separate)
    tgt_vocab = marian_vocab(tgt_spm, pad_last=not separate)
    (folder / "vocab.json").write_text(json.dumps(src_vocab))
    if separate:
        (folder / "target_vocab.json").write_text(json.dumps(tgt_vocab))
    pad, eos = src_vocab["<pad>"], src_vocab["</s>"]
    settings = dict(vocab_size=len(src_vocab), decoder_vocab_size=len(tgt_vocab), d_model=16,
                    encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                    decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                    activation_function="swish", scale_embedding=True, max_position_embeddings=64,
                    pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad,
                    forced_eos_token_id=eos, share_encoder_decoder_embeddings=not separate,
                    init_std=0.5, dropout=0.1)
    torch.manual_seed(seed)
    model = MarianMTModel(MarianConfig(**{**settings, **overrides}))
    tokenizer = MarianTokenizer(str(src_spm), str(tgt_spm), str(folder / "vocab.json"),
                                target_vocab_file=str(folder / "target_vocab.json") if separate else None,
                                separate_vocabs=separate)
    with torch.no_grad():
        bias = torch.randn_like(model.final_logits_bias) * 0.3
        bias[0, eos] += eos_bias
        model.final_logits_bias.copy_(bias)
    model.generation_config.bad_words_ids = [[pad]]
    model.eval().save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    for f in folder.glob("*.model"):
        f.unlink()
    for f in folder.glob("*.vocab"):
        f.unlink()
    return folder


def make_run(folder: Path, seed: int = 0, **model) -> Path:
    """A random (untrained) s2s Transformer run directory with a joint SentencePiece tokenizer."""
    raw = {"name": folder.name, "task": "translation",
           "tokenizer": {"type": "unigram", "vocab_size": 60},
           "model": {"arch": "transformer", "d_model": 16, "heads": 2, "ffn_dim": 32,
                     "enc_layers": 2, "dec_layers": 2, "dropout": 0.1, **model},
           "decode": {"beam": 3, "max_len_a": 1.0, "max_len_b": 12}}
    recipe = recipe_from_dict(raw)
    texts = sentences(400, seed)
    tokenizer = Tokenizer.train(recipe.tokenizer, texts, texts, folder / "tokenizer")
    torch.manual_seed(seed)
    net = build_model(recipe.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" not in name:
                p.normal_(0.0, 0.4)
    save_recipe(recipe, folder / "recipe.yaml")
    save_checkpoint(folder / "checkpoints", 1, net, None)
    set_pointer(folder / "checkpoints", "best", step_name(1))
    return folder

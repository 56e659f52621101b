"""Export an s2s Transformer run to CTranslate2, and decode with it.

`RunConverter` is a `ctranslate2.converters.Converter`, as CTranslate2's own OpenNMT-py and
fairseq converters are: it builds a `TransformerSpec` with the run's architecture (pre- or
post-norm, final LayerNorms with pre-norm only, embeddings scaled by sqrt(d) or not, the
activation), fills in its weights (fused query/key/value projections as CTranslate2 lays them
out, the position table given explicitly, since s2s interleaves its sinusoids and CTranslate2
would otherwise make its own), registers the vocabularies (s2s pieces in id order) and lets
CTranslate2 quantise and save. The export folder also holds `recipe.yaml` and `tokenizer/`, and
`s2s-export.json` marks it, so `s2s translate OUT_DIR` needs nothing else.

CTranslate2 has no recurrent decoder, and only multi-head cross-attention: other runs are a
one-line error. Sources are passed exactly as s2s makes them (no "<s>" or "</s>" added).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import ctranslate2
import numpy as np
from ctranslate2.converters import Converter
from ctranslate2.specs import common_spec, transformer_spec

from s2s.data.batching import token_batches
from s2s.data.tokenizer import Tokenizer
from s2s.errors import UserError
from s2s.export import CT2_MARKER
from s2s.files import atomic_directory
from s2s.recipe import save_recipe
from s2s.run import RECIPE_FILE, TOKENIZER_DIR, Run, load_run_recipe, pick_device
from s2s.search import Hypothesis
from s2s.vocab import BOS, EOS, NEVER_OUTPUT, UNK

QUANTIZATIONS = ("float32", "int8", "int8_float32")
ACTIVATIONS = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU,
               "swish": common_spec.Activation.SWISH}


def check_convertible(cfg) -> None:
    if cfg.arch != "transformer":
        raise UserError(f"model.arch is {cfg.arch}: CTranslate2 has no {cfg.arch.upper()} decoder; "
                        "only Transformer runs export to CTranslate2")
    cross = cfg.cross_attention
    if cross is not None and (cross.type != "multihead" or cross.heads != cfg.heads):
        raise UserError(f"model.cross_attention is {cross.type}: CTranslate2's cross-attention is "
                        f"multi-head with model.heads ({cfg.heads}) heads")


def numpy(t) -> np.ndarray:
    """A copy: CTranslate2 quantises its arrays in place, which must not reach the s2s model."""
    return t.detach().float().cpu().numpy().copy()


def set_linear(spec, linear) -> None:
    spec.weight = numpy(linear.weight)
    if linear.bias is not None:
        spec.bias = numpy(linear.bias)


def set_fused(spec, linears) -> None:
    """Several projections as one (CTranslate2 fuses Q, K, V and K, V along the output axis)."""
    spec.weight = np.concatenate([numpy(lin.weight) for lin in linears])
    spec.bias = np.concatenate([numpy(lin.bias) for lin in linears])


def set_norm(spec, norm) -> None:
    spec.gamma, spec.beta = numpy(norm.weight), numpy(norm.bias)


def position_table(positions) -> np.ndarray:
    """(max_positions, d) as s2s adds it: learned, or its interleaved sinusoids."""
    return numpy(positions.table)


def build_spec(run: Run) -> transformer_spec.TransformerSpec:
    cfg, model = run.recipe.model, run.model
    check_convertible(cfg)
    spec = transformer_spec.TransformerSpec.from_config(
        (cfg.enc_layers, cfg.dec_layers), cfg.heads, pre_norm=cfg.norm == "pre",
        activation=ACTIVATIONS[cfg.activation])
    enc, dec = spec.encoder, spec.decoder
    enc.scale_embeddings = dec.scale_embeddings = bool(cfg.scale_embeddings)
    enc.embeddings[0].weight = numpy(model.src_embed.weight)
    enc.position_encodings.encodings = position_table(model.src_positions)
    for layer_spec, layer in zip(enc.layer, model.encoder):
        attn = layer.self_attn
        set_fused(layer_spec.self_attention.linear[0], (attn.q_proj, attn.k_proj, attn.v_proj))
        set_linear(layer_spec.self_attention.linear[1], attn.out_proj)
        set_norm(layer_spec.self_attention.layer_norm, layer.attn_block.norm)
        set_ffn(layer_spec.ffn, layer)
    decoder = model.decoder
    dec.embeddings.weight = numpy(decoder.embed.weight)
    dec.position_encodings.encodings = position_table(decoder.positions)
    set_linear(dec.projection, decoder.generator)
    for layer_spec, layer in zip(dec.layer, decoder.layers):
        own, cross = layer.self_attn, layer.cross_attn
        set_fused(layer_spec.self_attention.linear[0], (own.q_proj, own.k_proj, own.v_proj))
        set_linear(layer_spec.self_attention.linear[1], own.out_proj)
        set_norm(layer_spec.self_attention.layer_norm, layer.self_block.norm)
        set_linear(layer_spec.attention.linear[0], cross.q_proj)
        set_fused(layer_spec.attention.linear[1], (cross.k_proj, cross.v_proj))
        set_linear(layer_spec.attention.linear[2], cross.out_proj)
        set_norm(layer_spec.attention.layer_norm, layer.cross_block.norm)
        set_ffn(layer_spec.ffn, layer)
    if cfg.norm == "pre":
        set_norm(enc.layer_norm, model.enc_norm)
        set_norm(dec.layer_norm, decoder.norm)
    tok = run.tokenizer
    src_pieces = tok.src_pieces(list(range(tok.src_vocab_size)))
    tgt_pieces = tok.tgt_pieces(list(range(tok.tgt_vocab_size)))
    spec.register_source_vocabulary(src_pieces)
    spec.register_target_vocabulary(tgt_pieces)
    spec.config.unk_token, spec.config.eos_token = tgt_pieces[UNK], tgt_pieces[EOS]
    spec.config.bos_token = spec.config.decoder_start_token = tgt_pieces[BOS]
    spec.config.layer_norm_epsilon = decoder.layers[0].self_block.norm.eps
    return spec


def set_ffn(spec, layer) -> None:
    set_linear(spec.linear_0, layer.ffn.inner)
    set_linear(spec.linear_1, layer.ffn.outer)
    set_norm(spec.layer_norm, layer.ffn_block.norm)


class RunConverter(Converter):
    """CTranslate2 converter for an opened s2s run (its chosen checkpoint)."""

    def __init__(self, run: Run):
        self.run = run

    def _load(self):
        return build_spec(self.run)


def export_ctranslate2(run: Run, out_dir: Path, quantization: str = "float32") -> Path:
    """Write `out_dir` (atomically): CTranslate2's model files, plus the run's recipe, tokenizer
    and a marker, so `s2s translate OUT_DIR` works without the run."""
    if quantization not in QUANTIZATIONS:
        raise UserError(f"--quantization must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")
    check_convertible(run.recipe.model)
    with atomic_directory(Path(out_dir)) as tmp:
        RunConverter(run).convert(str(tmp), quantization=quantization, force=True)
        save_recipe(run.recipe, tmp / RECIPE_FILE)
        shutil.copytree(run.dir / TOKENIZER_DIR, tmp / TOKENIZER_DIR)
        marker = {"engine": "ctranslate2", "ctranslate2": ctranslate2.__version__,
                  "quantization": quantization, "run": str(run.dir), "checkpoint": run.checkpoint.name}
        (tmp / CT2_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)


class CTranslate2Engine:
    """Decodes token ids with a CTranslate2 Translator, with s2s's search settings: beam size,
    length penalty, n-best, and the per-batch length budget a * source length + b (the longest
    sentence's, since CTranslate2 takes one budget per call). Padding and the start token are
    never emitted, as in s2s's own search."""

    def __init__(self, model_dir: Path, tokenizer, threads: int = 0, compute_type: str = "default"):
        self.translator = ctranslate2.Translator(str(model_dir), device="cpu",
                                                 compute_type=compute_type, intra_threads=threads)
        self.tokenizer = tokenizer
        pieces = tokenizer.tgt_pieces(list(range(tokenizer.tgt_vocab_size)))
        self.tgt_ids = {p: i for i, p in enumerate(pieces)}
        self.never = [[pieces[i]] for i in NEVER_OUTPUT]

    def search(self, sources: list[list[int]], opts, decode) -> list[list[Hypothesis]]:
        """n-best hypotheses of each source (none for an empty one), as `s2s.search.decode`.

        s2s's budget counts the end token, which it forces at the last step: at most
        budget - 1 tokens before it. CTranslate2 takes one budget per call, the batch's largest;
        a longer output is cut to its own sentence's budget (exactly s2s's greedy output; beam
        search rarely reaches a budget)."""
        results: list[list[Hypothesis]] = [[] for _ in sources]
        lengths = np.array([len(s) for s in sources])
        rows = np.flatnonzero(lengths > 0)
        budgets = np.floor(lengths * decode.max_len_a + decode.max_len_b).astype(int)
        if opts.max_len:
            budgets = np.minimum(budgets, opts.max_len)
        for index in token_batches(lengths, lengths, rows, batch_tokens=10**9,
                                   max_sentences=opts.batch_size):
            found = self.translator.translate_batch(
                [self.tokenizer.src_pieces(sources[i]) for i in index], beam_size=opts.beam,
                num_hypotheses=max(opts.n_best, 1), length_penalty=opts.length_penalty,
                max_decoding_length=max(int(budgets[index].max()) - 1, 1), min_decoding_length=0,
                return_scores=True, suppress_sequences=self.never, max_input_length=0)
            for i, result in zip(index.tolist(), found):
                keep = max(int(budgets[i]) - 1, 0)
                results[i] = [Hypothesis([self.tgt_ids[p] for p in tokens][:keep], score)
                              for tokens, score in zip(result.hypotheses, result.scores)]
        return results


def open_export(path: Path, threads: int = 0) -> Run:
    """A Run that translates with the CTranslate2 model in `path` (no s2s model inside)."""
    path = Path(path)
    recipe = load_run_recipe(path)
    tokenizer = Tokenizer.load(path / TOKENIZER_DIR)
    engine = CTranslate2Engine(path, tokenizer, threads)
    return Run(path, recipe, tokenizer, None, pick_device("cpu"), "fp32", path, engine=engine)


def with_engine(run: Run, threads: int = 0) -> Run:
    """The same run, decoding with CTranslate2 (converted now, float32, into a temporary
    folder); its s2s model stays for alignments."""
    with tempfile.TemporaryDirectory() as tmp:
        RunConverter(run).convert(str(Path(tmp) / "model"), force=True)
        run.model.to(run.device)
        run.engine = CTranslate2Engine(Path(tmp) / "model", run.tokenizer, threads)
    return run

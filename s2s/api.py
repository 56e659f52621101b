"""The Python API: load a trained run, then translate, look at attention, or caption images.

    import s2s
    m = s2s.load("runs/dates-rnn-bahdanau")
    m.translate(["Saturday, 4 July 1998"], beam=5)     # [{"source": ..., "hypotheses": [...]}]
    m.attention("Saturday, 4 July 1998")                # what `s2s inspect ... -o x.json` writes
    m.caption(["photo.jpg"])                            # a captioning run

Every method returns plain JSON-able values (dicts, lists, strings, numbers): exactly what the
HTTP service (`s2s serve`) sends, since the service is a thin layer over this class. A mistake
in an argument raises `InputError`, a `UserError` that names the argument (`text[2]`, `layer`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from s2s.alignment.forced import align, default_choice, describe, image_attention, layers_and_heads
from s2s.data.images import open_image, to_tensor
from s2s.errors import UserError
from s2s.run import Run
from s2s.tasks.captioning import caption_inputs, model_inputs
from s2s.tasks.translation import sentence_record
from s2s.translate import (MAX_INPUT_TOKENS, DecodeOptions, Translation, TranslationStream,
                           add_links, translate_ids)
from s2s.vocab import EOS_PIECE

# attention kinds and the key of each in an attention record (cross-attention is top level)
KINDS = {"cross": "weights", "encoder-self": "encoder_self", "decoder-self": "decoder_self"}
MAX_INPUT_CHARS = 32 * MAX_INPUT_TOKENS  # longer text is refused before it is tokenised


class InputError(UserError):
    """A bad argument: `field` names it (`text[2]`, `kind`), the message says what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def load(run_dir: str | Path, checkpoint: str = "best", device: str = "auto",
         name: str | None = None, quantize: str = "none") -> "Model":
    """Open a run directory (as `s2s translate RUN_DIR` does) for use from Python;
    `quantize="int8"` decodes with dynamic int8 linear layers (CPU)."""
    return Model(Run.open(run_dir, checkpoint, device, quantize=quantize), name)


def translation_record(source: str, nbest: list[Translation], align: bool = False) -> dict:
    return {"source": source, "hypotheses": [
        {"text": t.text, "score": t.score, **({"alignment": t.links} if align else {})} for t in nbest]}


def record_kinds(record: dict) -> list[str]:
    """The attention kinds an attention record holds, in the order of `KINDS`."""
    return [kind for kind, key in KINDS.items() if key in record]


class Model:
    """A trained run: translation, attention records and captions as JSON-able values."""

    def __init__(self, run: Run, name: str | None = None):
        self.run = run
        self.name = name or Path(run.dir).name

    @property
    def task(self) -> str:
        return self.run.recipe.task

    def info(self) -> dict:
        """Name, task, architecture, attention layers and heads, and the decoding defaults."""
        recipe = self.run.recipe
        layers, heads = layers_and_heads(self.run.model)  # of cross-attention
        layer, head = default_choice(self.run)
        d = recipe.decode
        return {"name": self.name, "task": self.task, "recipe": recipe.name,
                "architecture": describe(self.run), "arch": recipe.model.arch,
                "layers": layers, "heads": heads,
                "default_layer": layer, "default_head": head,
                "checkpoint": self.run.checkpoint.name, "device": str(self.run.device),
                "decode": {"beam": d.beam, "length_penalty": d.length_penalty,
                           "max_len_a": d.max_len_a, "max_len_b": d.max_len_b,
                           "batch_size": d.batch_size},
                "max_input_tokens": MAX_INPUT_TOKENS}

    # -- translation -----------------------------------------------------------------------------

    def check_texts(self, texts, field: str = "text") -> list[list[int]]:
        """Token ids of each text, or an InputError naming the first empty or over-long one."""
        self.require("translation")
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise InputError(field, "must be a list of strings")
        if not texts:
            raise InputError(field, "is empty: give at least one sentence")
        for i, text in enumerate(texts):
            if not text.strip():
                raise InputError(f"{field}[{i}]", "is empty")
            if len(text) > MAX_INPUT_CHARS:
                raise InputError(f"{field}[{i}]", f"has {len(text)} characters, more than the "
                                 f"{MAX_INPUT_CHARS} allowed; split it into sentences")
        ids = self.run.tokenizer.encode_src([t.strip() for t in texts])
        for i, seq in enumerate(ids):
            if len(seq) > MAX_INPUT_TOKENS:
                raise InputError(f"{field}[{i}]", f"has {len(seq)} tokens, more than the "
                                 f"{MAX_INPUT_TOKENS} allowed; split it into sentences")
        return ids

    def options(self, beam: int | None = None, n_best: int = 1,
                length_penalty: float | None = None) -> DecodeOptions:
        for field, value in (("beam", beam), ("n_best", n_best)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InputError(field, f"must be a whole number of at least 1, not {value!r}")
        if length_penalty is not None and not isinstance(length_penalty, (int, float)):
            raise InputError("length_penalty", f"must be a number, not {length_penalty!r}")
        return DecodeOptions.from_run(self.run, beam=beam, n_best=n_best, length_penalty=length_penalty)

    def translate(self, texts: list[str] | str, beam: int | None = None, n_best: int = 1,
                  length_penalty: float | None = None, align: bool = False) -> list[dict]:
        """One {"source", "hypotheses": [{"text", "score"}, ...]} per text, best first; with
        `align`, each hypothesis also has "alignment": Pharaoh links as `s2s translate --align`
        writes them. A single string is taken as a list of one. Unset options are the run's."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = self.check_texts(texts)
        opts = self.options(beam, n_best, length_penalty)
        results = translate_ids(self.run, ids, opts)
        sources = [t.strip() for t in texts]
        if align:
            add_links(self.run, sources, results, *default_choice(self.run))
        return [translation_record(source, nbest, align) for source, nbest in zip(sources, results)]

    def translation_session(self) -> "TranslationSession | None":
        """`translate` with continuous batching, for a server: texts join a running decoding
        at any step and come back as soon as they are done; None where another inference
        engine decodes (CTranslate2)."""
        if self.run.engine is not None:
            return None
        return TranslationSession(self, TranslationStream(self.run))

    # -- attention -------------------------------------------------------------------------------

    def attention(self, text: str, target: str | None = None, kind: str | None = None,
                  layer: int | str | None = None, head: int | str | None = None,
                  words: bool = False, beam: int | None = None,
                  length_penalty: float | None = None) -> dict:
        """The attention record of `text` and its translation (or the forced `target`): the
        dict `s2s inspect RUN TEXT -o x.json` writes, tokens and every layer and head.

        `kind` ("cross", "encoder-self", "decoder-self"; default: every kind the model has),
        `layer` (index or "all") and `head` (index, "mean" or "all") narrow it; the matrices
        stay 4-D (layers, heads, rows, columns) and "extra" says what was chosen.
        """
        if not isinstance(text, str):
            raise InputError("text", f"must be a string, not {type(text).__name__}")
        try:
            self.check_texts([text])
        except InputError as e:
            raise InputError("text", e.message) from None
        return self.attentions([text], [target], kind, layer, head, words, beam, length_penalty)[0]

    def attentions(self, texts: list[str], targets: list[str | None], kind: str | None = None,
                   layer: int | str | None = None, head: int | str | None = None,
                   words: bool = False, beam: int | None = None,
                   length_penalty: float | None = None) -> list[dict]:
        """`attention` for many sentences in one batch (a None target: the model's translation)."""
        self.check_attention(texts, targets, kind, layer, head, words)
        sources = [t.strip() for t in texts]
        missing = [i for i, t in enumerate(targets) if t is None]
        if missing:
            found = self.translate([sources[i] for i in missing], beam, 1, length_penalty)
            targets = list(targets)
            for i, result in zip(missing, found):
                targets[i] = result["hypotheses"][0]["text"] if result["hypotheses"] else ""
        items = align(self.run, sources, [t.strip() for t in targets])
        return [narrow(sentence_record(self.run, item, words), kind, layer, head)
                for item in items]

    def check_attention(self, texts: list[str], targets: list[str | None], kind=None,
                        layer=None, head=None, words: bool = False) -> None:
        """The checks `attentions` makes before any work: InputError naming the argument."""
        if isinstance(texts, str) or isinstance(targets, str) or len(texts) != len(targets):
            raise InputError("target", "give one target (or None) per text")
        self.check_texts(texts)
        check_choice(kind, layer, head)
        info = self.info()  # the decoder's layers and heads: what cross-attention has
        for field, value, count in (("layer", layer, info["layers"]), ("head", head, info["heads"])):
            if kind in (None, "cross") and isinstance(value, int) and not -count <= value < count:
                raise InputError(field, f"{value} does not exist; {_have(field, count)}")
        if not isinstance(words, bool):
            raise InputError("words", f"must be true or false, not {words!r}")
        for t in targets:
            if t is not None and not isinstance(t, str):
                raise InputError("target", f"must be a string, not {t!r}")
            if t is not None and len(t) > MAX_INPUT_CHARS:
                raise InputError("target", f"has more than {MAX_INPUT_CHARS} characters")
            if t is not None and len(self.run.tokenizer.encode_tgt([t])[0]) > MAX_INPUT_TOKENS:
                raise InputError("target", f"is longer than {MAX_INPUT_TOKENS} tokens")

    # -- captioning ------------------------------------------------------------------------------

    def caption(self, images: list, beam: int | None = None, n_best: int = 1,
                length_penalty: float | None = None, attention: bool = False) -> list[dict]:
        """One {"hypotheses": [{"text", "score"}, ...]} per image (a path or a PIL image).

        With `attention`, each hypothesis also has "attention": {"tokens" (its pieces and
        "</s>"), "grid" [h, w], "shape" [layers, heads, tokens, h * w], "weights"}: row t is
        where the decoder looked while writing token t, regions in reading order.
        """
        self.require("captioning")
        if isinstance(images, (str, Path)) or not hasattr(images, "__len__") or not len(images):
            raise InputError("images", "give a list of image files or PIL images")
        opts = self.options(beam, n_best, length_penalty)
        size = self.run.recipe.model.encoder.image_size
        out = []
        for start in range(0, len(images), opts.batch_size):
            chunk = images[start:start + opts.batch_size]
            pictures = torch.stack([to_tensor(i if hasattr(i, "convert") else open_image(i), size)
                                    for i in chunk])  # (B, 3, size, size)
            src = model_inputs(self.run, pictures)
            results = caption_inputs(self.run, src, opts)
            found = [{"hypotheses": [{"text": t.text, "score": t.score} for t in nbest]}
                     for nbest in results]
            if attention:
                self._add_region_attention(src, results, found)
            out.extend(found)
        return out

    def _add_region_attention(self, src: torch.Tensor, results: list, found: list[dict]) -> None:
        pairs = [(b, k) for b, nbest in enumerate(results) for k in range(len(nbest))]
        if not pairs:
            return
        rows = torch.tensor([b for b, _ in pairs])
        captions = [results[b][k].tokens for b, k in pairs]
        weights = image_attention(self.run, src[rows], captions).kinds["cross"].float().cpu().numpy()
        grid = list(self.run.model.grid_size)
        for (b, k), w in zip(pairs, weights):  # w: (L, H, T_max + 1, R)
            tokens = results[b][k].tokens
            w = w[:, :, :len(tokens) + 1]
            found[b]["hypotheses"][k]["attention"] = {
                "tokens": self.run.tokenizer.tgt_pieces(tokens) + [EOS_PIECE],
                "grid": grid, "shape": list(w.shape), "weights": w.tolist()}

    def require(self, task: str) -> None:
        """An InputError naming "model" unless this is a `task` model."""
        if self.task != task:
            use = "images" if self.task == "captioning" else "text"
            raise InputError("model", f"{self.name} is a {self.task} model: give it {use}")


def check_choice(kind, layer, head) -> None:
    """Validate a kind / layer / head choice before any work is done."""
    if kind is not None and kind not in KINDS:
        raise InputError("kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    for field, value, words in (("layer", layer, ("all",)), ("head", head, ("all", "mean"))):
        if value is None or value in words or (isinstance(value, int) and not isinstance(value, bool)):
            continue
        raise InputError(field, f"must be an index or {' or '.join(map(repr, words))}, not {value!r}")


def narrow(record: dict, kind: str | None, layer: int | str | None, head: int | str | None) -> dict:
    """The record with only `kind`'s matrices (all kinds for None), cut to `layer` and `head`."""
    check_choice(kind, layer, head)
    present = record_kinds(record)
    if kind is not None and kind not in present:
        raise InputError("kind", f"this model has no {kind} attention; it has {', '.join(present)}")
    dropped = set(present) - ({kind} if kind else set(present))
    if not dropped and layer is None and head is None:
        return record
    out = {}
    for key, value in record.items():
        if key in ("shape", "weights") and "cross" in dropped or key in (
                KINDS[k] for k in dropped):
            continue
        out[key] = value
    if layer is not None or head is not None:
        out["extra"] = {**record["extra"], "layer": layer, "head": head}
        for k in set(present) - dropped:
            entry = out if k == "cross" else out[KINDS[k]]
            cut = _cut(np.asarray(entry["weights"], dtype=np.float32).reshape(entry["shape"]),
                       layer, head)
            cut = {"shape": list(cut.shape), "weights": cut.tolist()}
            if k == "cross":
                out.update(cut)
            else:  # keeps the kind's other keys (its row and column tokens)
                out[KINDS[k]] = {**out[KINDS[k]], **cut}
    return out


def _cut(w: np.ndarray, layer, head) -> np.ndarray:
    """(L, H, R, C) -> the chosen layer and head, still 4-D."""
    layers, heads = w.shape[:2]
    if isinstance(layer, int):
        if not -layers <= layer < layers:
            raise InputError("layer", f"{layer} does not exist; {_have('layer', layers)}")
        w = w[layer % layers][None]
    if head == "mean":
        w = w.mean(1, keepdims=True)
    elif isinstance(head, int):
        if not -heads <= head < heads:
            raise InputError("head", f"{head} does not exist; {_have('head', heads)}")
        w = w[:, head % heads][:, None]
    return w


def _have(what: str, count: int) -> str:
    return f"this model has {what}s 0-{count - 1}" if count > 1 else f"this model has only {what} 0"


class TranslationSession:
    """Texts join and leave one running translation (`Model.translation_session`)."""

    def __init__(self, model: Model, stream: TranslationStream):
        self.model, self.stream = model, stream

    def __len__(self) -> int:
        return len(self.stream)

    def add(self, texts: list[str], tags: list, beam: int | None = None, n_best: int = 1,
            length_penalty: float | None = None) -> list[tuple[object, dict]]:
        """Texts join as one batch, with their tags and options (as `Model.translate` takes
        them); an InputError (nothing joins) for a bad one. Returns (tag, record) of those done
        at once (none, unless a text has no tokens)."""
        ids = self.model.check_texts(texts)
        opts = self.model.options(beam, n_best, length_penalty)
        done = self.stream.add(ids, opts, [(tag, text.strip()) for tag, text in zip(tags, texts)])
        return [(tag, translation_record(source, nbest)) for (tag, source), nbest in done]

    def reset(self) -> None:
        """Drop every text in flight (after a failure)."""
        self.stream.clear()

    def step(self) -> list[tuple[object, dict]]:
        """One decoding step; (tag, the record `Model.translate` gives) of each text done."""
        return [(tag, translation_record(source, nbest)) for (tag, source), nbest in self.stream.step()]

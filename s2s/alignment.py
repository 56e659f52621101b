"""Alignment matrices as people read them: words, Pharaoh links, AER, a terminal grid, plots.

Models give attention for one sentence pair as (layers, heads, T_target, S_source) over
SentencePiece pieces; an RNN has one layer and one head. Everything here is a pure function of
arrays and token lists (numpy or torch in, numpy or text out), so the same code serves the CLI,
notebooks and tests, and no model is needed to check it.

The rules, stated once:

* Pieces -> words: a piece starting with "▁" (U+2581) begins a word, any other piece continues
  the word before it. Special tokens such as "</s>" or "<unk>" are words of their own. A lone
  "▁" (SentencePiece writes "▁", "4" when "▁4" is not in the vocabulary) begins a word together
  with the piece after it.
* Word-level attention: along the source axis the weights of a word's pieces are SUMMED (the
  probability mass the word received); along the target axis the rows of a word's pieces are
  AVERAGED (a word row still sums to 1 when piece rows did).
* Pharaoh links are "i-j" with i the SOURCE word and j the TARGET word, and each target word
  links to its highest-weighted source word. The last target row (the end-of-sentence token) is
  dropped by default: it attends to whatever ends the source and would add a spurious link.
* Gold alignments use the same "src-tgt" order. Accepted tokens: "i-j" and "i-j-S" (sure),
  "i?j" and "i-j-P" (possible), S and P in either case; the "sentence i j S|P" one-link-per-line
  files of the 2003 shared task must be converted first. Possible links include the sure ones.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
import zipfile
from pathlib import Path

import numpy as np

from s2s.errors import UserError

__all__ = ["merge_pieces", "word_text", "to_words", "select", "pharaoh", "parse_alignment_line",
           "read_alignments", "alignment_error_rate", "attention_stats", "render_terminal",
           "plot_heatmap", "plot_grid", "attention_record", "save_matrices", "load_matrices",
           "span_accuracy"]

WORD_START = "▁"
_SPECIAL = re.compile(r"^<[^<>\s]+>$")  # </s>, <unk>, <pad>, <s>, <2de> ...


def _array(x) -> np.ndarray:
    """numpy or torch (any dtype, any device) -> numpy."""
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------------------------------
# Pieces -> words


def merge_pieces(pieces: list[str]) -> list[tuple[int, int]]:
    """Half-open word spans [start, end) over piece indices (see the module docstring)."""
    spans: list[list[int]] = []
    for i, piece in enumerate(pieces):
        special = bool(_SPECIAL.match(piece))
        after_special = i > 0 and bool(_SPECIAL.match(pieces[i - 1]))
        after_lone_start = i > 0 and pieces[i - 1] == WORD_START and not special
        if spans and not special and not after_special and (
                after_lone_start or not piece.startswith(WORD_START)):
            spans[-1][1] = i + 1  # continues the current word
        else:
            spans.append([i, i + 1])
    return [(start, end) for start, end in spans]


def word_text(pieces: list[str], spans: list[tuple[int, int]]) -> list[str]:
    """The text of each word: its pieces joined, without "▁"."""
    return ["".join(pieces[start:end]).replace(WORD_START, "") for start, end in spans]


def _check_spans(spans: list[tuple[int, int]], size: int, what: str) -> None:
    if not spans or spans[0][0] != 0 or spans[-1][1] != size:
        covered = spans[-1][1] if spans else 0
        raise UserError(f"the {what} words cover {covered} pieces but the matrix has {size}")


def to_words(matrix, tgt_spans: list[tuple[int, int]],
             src_spans: list[tuple[int, int]]) -> np.ndarray:
    """(..., T, S) piece attention -> (..., Tw, Sw) word attention: source sum, target mean."""
    m = _array(matrix)
    _check_spans(tgt_spans, m.shape[-2], "target")
    _check_spans(src_spans, m.shape[-1], "source")
    m = np.stack([m[..., a:b].sum(-1) for a, b in src_spans], axis=-1)  # (..., T, Sw)
    return np.stack([m[..., a:b, :].mean(-2) for a, b in tgt_spans], axis=-2)  # (..., Tw, Sw)


# ---------------------------------------------------------------------------------------------
# Choosing layers and heads


def _index(choice: int | str, count: int, what: str, modes: tuple[str, ...]) -> int | str:
    """An index in range (negative counts from the end) or one of `modes`; errors name both."""
    if isinstance(choice, str) and choice in modes:
        return choice
    try:
        index = int(choice)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be an index or {' or '.join(map(repr, modes))}, "
                        f"not {choice!r}") from None
    if not -count <= index < count:
        have = f"{what}s 0-{count - 1}" if count > 1 else f"only {what} 0"
        raise UserError(f"{what} {index} does not exist; this model has {have}")
    return index % count


def select(weights, layer: int | str = -1, head: int | str = "mean") -> np.ndarray:
    """Pick from (L, H, T, S): layer index or "all"; head index, "mean" or "all".

    Returns (T, S), or (H, T, S) for head="all", (L, T, S) for layer="all", (L, H, T, S) for both.
    """
    w = _array(weights)
    if w.ndim != 4:
        raise UserError(f"attention weights must be (layers, heads, T, S), got shape {w.shape}")
    layer = _index(layer, w.shape[0], "layer", ("all",))
    head = _index(head, w.shape[1], "head", ("mean", "all"))
    w = w if layer == "all" else w[layer:layer + 1]  # (L', H, T, S)
    if head == "mean":
        w = w.mean(1)  # (L', T, S)
    elif head != "all":
        w = w[:, head]  # (L', T, S)
    return w if layer == "all" else w[0]


# ---------------------------------------------------------------------------------------------
# Links, gold alignments and AER


def pharaoh(matrix, drop_last_target: bool = True) -> str:
    """'i-j' links (source i, target j) from each target row's argmax, sorted, space separated.

    The last row (end of sentence) is dropped unless `drop_last_target` is False; rows with no
    weight at all (padding) get no link.
    """
    m = _array(matrix)  # (Tw, Sw)
    if drop_last_target:
        m = m[:-1]
    links = sorted((int(row.argmax()), j) for j, row in enumerate(m) if row.max() > 0)
    return " ".join(f"{i}-{j}" for i, j in links)


_LINK = re.compile(r"^(\d+)(?:-(\d+)(?:-([SPsp]))?|\?(\d+))$")


def parse_alignment_line(line: str, line_number: int,
                         path: str) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """One line of gold links -> (sure, possible) sets of (source, target), possible ⊇ sure."""
    sure, possible = set(), set()
    for token in line.split():
        match = _LINK.match(token)
        if not match:
            raise UserError(f"{path}, line {line_number}: cannot read alignment '{token}'")
        src, tgt, kind, possible_tgt = match.groups()
        if possible_tgt is not None:
            possible.add((int(src), int(possible_tgt)))
        elif kind in ("P", "p"):
            possible.add((int(src), int(tgt)))
        else:
            sure.add((int(src), int(tgt)))
    return sure, possible | sure


def read_alignments(path) -> list[tuple[set, set]]:
    """A UTF-8 file of one line per sentence (an empty line: no links) -> [(sure, possible)]."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not valid UTF-8") from None
    return [parse_alignment_line(line, n, str(path)) for n, line in enumerate(text.splitlines(), 1)]


def alignment_error_rate(predicted: list[set],
                         gold: list[tuple[set, set]]) -> dict:
    """Corpus-level AER, precision and recall (Och & Ney 2003) of predicted links A.

    precision = |A∩P| / |A|, recall = |A∩S| / |S|, AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|);
    an empty denominator gives 0.0.
    """
    if len(predicted) != len(gold):
        raise UserError(f"{len(predicted)} predicted alignments but {len(gold)} gold ones")
    a = s = a_s = a_p = 0
    for links, (sure, possible) in zip(predicted, gold):
        links, possible = set(links), set(possible) | set(sure)
        a, s = a + len(links), s + len(sure)
        a_s, a_p = a_s + len(links & sure), a_p + len(links & possible)
    return {"aer": 1.0 - (a_s + a_p) / (a + s) if a + s else 0.0,
            "precision": a_p / a if a else 0.0, "recall": a_s / s if s else 0.0,
            "sentences": len(gold), "predicted_links": a, "sure_links": s}


# ---------------------------------------------------------------------------------------------
# Statistics


def attention_stats(matrix) -> dict:
    """Row entropy in nats (low = sharp) and coverage, the attention each source token received.

    Coverage near 0 hints at a dropped source word, well above 1 at one translated twice.
    """
    m = _array(matrix).astype(np.float64)  # (T, S)
    terms = np.where(m > 0, -m * np.log(np.where(m > 0, m, 1.0)), 0.0)  # 0 log 0 = 0
    entropy = terms.sum(-1)  # (T,)
    return {"entropy": entropy.tolist(), "mean_entropy": float(entropy.mean()) if m.size else 0.0,
            "coverage": m.sum(0).tolist()}


# ---------------------------------------------------------------------------------------------
# Terminal grid

SHADES = " ░▒▓█"
_RAMP = (231, 195, 159, 123, 117, 75, 69, 33, 27, 20)  # ANSI 256 colours, light to dark blue


def _width(text: str) -> int:
    """Terminal columns `text` takes (wide East Asian characters take two, combining none)."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF"
               else 1 for c in text)


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` columns (ending in "…" when cut) and padded on the right."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    if _width(text) > width:
        while _width(text) > width - 1:
            text = text[:-1]
        text += "…"
    return text + " " * (width - _width(text))


def _vertical(text: str, tall: int, cell: int) -> list[str]:
    """`text` as `tall` cells of `cell` columns, one character each, cut with "…" if longer."""
    chars = ["?" if not c.isprintable() or _width(c) > cell else c for c in text]
    chars = chars[:tall - 1] + ["…"] if len(chars) > tall else chars
    return [c + " " * (cell - _width(c)) for c in chars] + [" " * cell] * (tall - len(chars))


def _check_labels(m: np.ndarray, src_tokens: list[str], tgt_tokens: list[str]) -> None:
    if m.ndim != 2 or m.shape != (len(tgt_tokens), len(src_tokens)):
        raise UserError(f"an alignment of shape {m.shape} does not match {len(tgt_tokens)} target "
                        f"and {len(src_tokens)} source tokens")


def render_terminal(matrix, src_tokens: list[str], tgt_tokens: list[str], width_limit: int = 0,
                    color: bool = True) -> str:
    """A shaded grid for a terminal: target tokens down the left, source tokens written downwards.

    Shades scale with weight / the matrix's largest weight. With `width_limit` > 0 the cells
    narrow to one column and then the rightmost source tokens are left out (a header line says
    so) until each line fits.
    """
    m = _array(matrix).astype(np.float64)  # (T, S)
    _check_labels(m, src_tokens, tgt_tokens)
    left = min(max((_width(t) for t in tgt_tokens), default=1), 16)
    if width_limit > 0:
        left = min(left, max(4, width_limit // 3))
    cell, shown = 2, len(src_tokens)
    if width_limit > 0 and left + 1 + cell * shown > width_limit:
        cell = 1
        shown = max(1, min(shown, width_limit - left - 1))
    peak = m.max() if m.size and m.max() > 0 else 1.0
    header = [f"{' ' * left} {SHADES[1:]} up to {peak:.2f}"]
    if shown < len(src_tokens):
        header.append(f"{' ' * left} source tokens 0-{shown - 1} of {len(src_tokens)} shown")
    tall = min(max((len(t) for t in src_tokens[:shown]), default=1), 10)
    columns = [_vertical(t, tall, cell) for t in src_tokens[:shown]]  # each read top to bottom
    for k in range(tall):
        header.append(" " * (left + 1) + "".join(c[k] for c in columns).rstrip())
    lines = []
    for label, row in zip(tgt_tokens, m[:, :shown] / peak):
        cells = []
        for x in row:
            shade = SHADES[int(np.clip(np.round(x * 4), 0, 4))] * cell
            if color:
                colour = _RAMP[int(np.clip(np.round(x * (len(_RAMP) - 1)), 0, len(_RAMP) - 1))]
                shade = f"\x1b[38;5;16;48;5;{colour}m{shade}"
            cells.append(shade)
        lines.append(_fit(label, left) + " " + "".join(cells) + ("\x1b[0m" if color else ""))
    if width_limit > 0:
        header = [_fit(line, width_limit).rstrip() for line in header]
    return "\n".join(header + lines)


# ---------------------------------------------------------------------------------------------
# Plots and files


def _atomic_write(path: Path, write) -> None:
    """Call write(binary_file) on a temporary file beside `path`, then rename it into place."""
    from s2s.checkpoint import readable

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        readable(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend switch)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError('plotting needs matplotlib: pip install "s2s[plot]"') from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path) -> None:
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("png", "svg", "pdf"):
        raise UserError(f"cannot plot to {path}: the name must end in .png, .svg or .pdf")
    _atomic_write(path, lambda f: fig.savefig(f, format=kind, dpi=150))


def _sizes(n_tokens: int, longest_label: int) -> tuple[float, float, float]:
    """(cell inches, font points, label margin inches): cells and fonts shrink as tokens grow."""
    cell = float(np.clip(10.0 / max(n_tokens, 1), 0.14, 0.35))
    font = float(np.clip(cell * 72 * 0.7, 5.5, 10.0))
    return cell, font, 0.4 + min(longest_label, 24) * font * 0.6 / 72


def _fit_title(title: str, width_inches: float, points: float = 10.0) -> str:
    """The title wrapped onto as many lines as the figure's width needs (never cut off)."""
    import textwrap

    return textwrap.fill(title, width=max(16, int(width_inches * 72 / (points * 0.6))))


def plot_heatmap(matrix, src_tokens: list[str], tgt_tokens: list[str], path, title: str):
    """One alignment as a heatmap: source along x (labels rotated), target along y; returns it."""
    m = _array(matrix).astype(np.float64)  # (T, S)
    _check_labels(m, src_tokens, tgt_tokens)
    T, S = m.shape
    cell, font, margin = _sizes(max(T, S), max(map(len, [*src_tokens, *tgt_tokens, ""])))
    width = S * cell + margin + 1.2
    fig = new_figure(width, T * cell + margin + 0.6)
    ax = fig.add_subplot()
    image = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=max(m.max(initial=0.0), 1e-9),
                      aspect="auto", interpolation="nearest")
    ax.set_xticks(range(S), src_tokens, rotation=90, fontsize=font)
    ax.set_yticks(range(T), tgt_tokens, fontsize=font)
    ax.tick_params(length=0)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    ax.set_title(_fit_title(title, width), fontsize=10)
    fig.colorbar(image, ax=ax, shrink=min(1.0, 4.0 / max(T * cell, 1e-9)), pad=0.02)
    save_figure(fig, path)
    return fig


def plot_grid(weights, src_tokens: list[str], tgt_tokens: list[str], path, title: str):
    """Every (layer, head) of (L, H, T, S) in an L x H grid on one colour scale; returns it.

    Token labels appear on the outer panels while there are at most 40 tokens a side.
    """
    w = _array(weights).astype(np.float64)  # (L, H, T, S)
    if w.ndim != 4:
        raise UserError(f"attention weights must be (layers, heads, T, S), got shape {w.shape}")
    _check_labels(w[0, 0], src_tokens, tgt_tokens)
    L, H, T, S = w.shape
    labelled = max(T, S) <= 40
    panel = float(np.clip((0.12 if labelled else 0.05) * max(T, S), 1.6, 3.0))
    font = float(np.clip(panel * 72 / max(T, S, 1) * 0.8, 4.0, 8.0))
    margin = 0.6 + (max(map(len, [*src_tokens, *tgt_tokens, ""])) * font * 0.6 / 72
                    if labelled else 0.0)
    width = H * panel + margin + 1.0
    fig = new_figure(width, L * panel + margin + 0.6)
    axes = fig.subplots(L, H, squeeze=False)
    peak = max(w.max(initial=0.0), 1e-9)
    for (i, j), ax in np.ndenumerate(axes):
        image = ax.imshow(w[i, j], cmap="Blues", vmin=0.0, vmax=peak, aspect="auto",
                          interpolation="nearest")
        ax.tick_params(length=0, labelsize=font)
        ax.set_xticks(range(S) if labelled and i == L - 1 else [])
        ax.set_yticks(range(T) if labelled and j == 0 else [])
        if labelled and i == L - 1:
            ax.set_xticklabels(src_tokens, rotation=90)
        if labelled and j == 0:
            ax.set_yticklabels(tgt_tokens)
        if i == 0:
            ax.set_title(f"head {j}", fontsize=9)
        if j == 0:
            ax.set_ylabel(f"layer {i}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.6 if L > 1 else 1.0, aspect=40)
    fig.suptitle(_fit_title(title, width, 12.0), fontsize=12)
    save_figure(fig, path)
    return fig


def attention_record(src_tokens: list[str], tgt_tokens: list[str], weights, extra: dict) -> dict:
    """The JSON-able record of (L, H, T, S) weights with their tokens and metadata: what
    `s2s inspect -o x.json` writes and what the Python API and the HTTP service return."""
    w = _array(weights)
    if w.ndim != 4:
        raise UserError(f"attention weights must be (layers, heads, T, S), got shape {w.shape}")
    _check_labels(w[0, 0], src_tokens, tgt_tokens)
    return {"src_tokens": list(src_tokens), "tgt_tokens": list(tgt_tokens),
            "shape": list(w.shape), "dtype": str(w.dtype), "weights": w.tolist(), "extra": extra}


def save_matrices(path, src_tokens: list[str], tgt_tokens: list[str], weights,
                  extra: dict) -> None:
    """Write (L, H, T, S) weights with their tokens and JSON metadata to .json or .npz."""
    path, w = Path(path), _array(weights)
    if w.ndim != 4:
        raise UserError(f"attention weights must be (layers, heads, T, S), got shape {w.shape}")
    _check_labels(w[0, 0], src_tokens, tgt_tokens)
    if path.suffix == ".json":
        record = attention_record(src_tokens, tgt_tokens, w, extra)
        text = json.dumps(record, ensure_ascii=False)
        _atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    elif path.suffix == ".npz":
        arrays = {"weights": w, "src_tokens": np.array(src_tokens, dtype=str),
                  "tgt_tokens": np.array(tgt_tokens, dtype=str),
                  "extra": np.array(json.dumps(extra, ensure_ascii=False))}
        _atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    else:
        raise UserError(f"cannot save attention to {path}: the name must end in .json or .npz")


def load_matrices(path) -> dict:
    """Read `save_matrices` output -> {"src_tokens", "tgt_tokens", "weights", "extra"}."""
    path = Path(path)
    if path.suffix not in (".json", ".npz"):
        raise UserError(f"cannot read attention from {path}: the name must end in .json or .npz")
    try:
        if path.suffix == ".json":
            record = json.loads(path.read_text(encoding="utf-8"))
            weights = np.array(record["weights"], dtype=record["dtype"]).reshape(record["shape"])
            src, tgt, extra = record["src_tokens"], record["tgt_tokens"], record["extra"]
        else:
            with np.load(path, allow_pickle=False) as data:
                weights = data["weights"]
                src, tgt = data["src_tokens"].tolist(), data["tgt_tokens"].tolist()
                extra = json.loads(str(data["extra"]))
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise UserError(f"{path} is not a saved attention file ({type(e).__name__}: {e})") from None
    return {"src_tokens": src, "tgt_tokens": tgt, "weights": weights, "extra": extra}


# ---------------------------------------------------------------------------------------------
# Span accuracy (the dates corpus)


def span_accuracy(matrix, src_char_spans: list[tuple[int, int]],
                  target_char_positions: dict[str, list[int]],
                  gold_spans: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Does each target token of a field attend to the right part of the source text?

    For every field (e.g. "year") and every target token index listed for it, the source token
    with the highest weight is looked up in `src_char_spans` (half-open character spans of the
    source tokens in the source text); it is correct when that span overlaps the field's gold
    span. A listed index past the last row (a short hypothesis) counts as wrong. Returns
    {field: (correct, total)}, to be summed over a corpus.
    """
    m = _array(matrix)  # (T, S)
    if len(src_char_spans) != m.shape[1]:
        raise UserError(f"{len(src_char_spans)} source character spans for {m.shape[1]} "
                        "source tokens")
    result = {}
    for field, positions in target_char_positions.items():
        if field not in gold_spans:
            raise UserError(f"no gold span for field {field!r}; have {', '.join(gold_spans)}")
        gold_start, gold_end = gold_spans[field]
        correct = 0
        for t in positions:
            if 0 <= t < m.shape[0]:
                start, end = src_char_spans[int(m[t].argmax())]
                correct += start < gold_end and gold_start < end
        result[field] = (correct, len(positions))
    return result

"""Drawing and exporting attention: a terminal grid, heatmaps, grids of heads, image overlays,
and the JSON/NPZ files that hold every matrix. Pure functions of arrays and token lists.
"""

from __future__ import annotations

import json
import textwrap
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2s.alignment.words import WORD_START, as_array
from s2s.errors import UserError
from s2s.files import atomic_write

__all__ = ["PatchView", "load_matrices", "matrices_record", "new_figure", "plot_grid", "plot_heatmap",
           "plot_overlays", "render_terminal", "save_figure", "save_matrices", "upsample"]

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
    m = as_array(matrix).astype(np.float64)  # (T, S)
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
    atomic_write(path, lambda f: fig.savefig(f, format=kind, dpi=150))


def _sizes(n_tokens: int, longest_label: int) -> tuple[float, float, float]:
    """(cell inches, font points, label margin inches): cells and fonts shrink as tokens grow."""
    cell = float(np.clip(10.0 / max(n_tokens, 1), 0.14, 0.35))
    font = float(np.clip(cell * 72 * 0.7, 5.5, 10.0))
    return cell, font, 0.4 + min(longest_label, 24) * font * 0.6 / 72


def _fit_title(title: str, width_inches: float, points: float = 10.0) -> str:
    """The title wrapped onto as many lines as the figure's width needs (never cut off)."""
    return textwrap.fill(title, width=max(16, int(width_inches * 72 / (points * 0.6))))


def plot_heatmap(matrix, src_tokens: list[str], tgt_tokens: list[str], path, title: str):
    """One alignment as a heatmap: source along x (labels rotated), target along y; returns it."""
    m = as_array(matrix).astype(np.float64)  # (T, S)
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
    w = as_array(weights).astype(np.float64)  # (L, H, T, S)
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


SELF_KINDS = {"encoder-self": "encoder_self", "decoder-self": "decoder_self"}  # kind -> file key


def matrices_record(src_tokens: list[str], tgt_tokens: list[str], weights, extra: dict,
                    self_attention: dict | None = None) -> dict:
    """What `s2s inspect -o x.json` writes, as a JSON-able dict: the cross-attention (L, H, T, S)
    under "weights" with its tokens, and each self-attention kind present under its own key with
    its row and column tokens: {"rows", "columns", "shape", "weights"}."""
    w = as_array(weights)
    if w.ndim != 4:
        raise UserError(f"attention weights must be (layers, heads, T, S), got shape {w.shape}")
    _check_labels(w[0, 0], src_tokens, tgt_tokens)
    record = {"src_tokens": list(src_tokens), "tgt_tokens": list(tgt_tokens),
              "shape": list(w.shape), "dtype": str(w.dtype), "weights": w.tolist()}
    for kind, (rows, columns, matrix) in (self_attention or {}).items():
        m = as_array(matrix)
        _check_labels(m[0, 0], columns, rows)
        record[SELF_KINDS[kind]] = {"rows": list(rows), "columns": list(columns),
                                    "shape": list(m.shape), "weights": m.tolist()}
    record["extra"] = extra
    return record


def save_matrices(path, src_tokens: list[str], tgt_tokens: list[str], weights,
                  extra: dict, self_attention: dict | None = None) -> None:
    """Write (L, H, T, S) weights with their tokens, any self-attention kinds ({kind: (rows,
    columns, (L, H, R, C))}) and JSON metadata to .json or .npz."""
    path = Path(path)
    record = matrices_record(src_tokens, tgt_tokens, weights, extra, self_attention)
    if path.suffix == ".json":
        text = json.dumps(record, ensure_ascii=False)
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    elif path.suffix == ".npz":
        arrays = {"weights": as_array(weights), "src_tokens": np.array(src_tokens, dtype=str),
                  "tgt_tokens": np.array(tgt_tokens, dtype=str),
                  "extra": np.array(json.dumps(extra, ensure_ascii=False))}
        for kind, (rows, columns, matrix) in (self_attention or {}).items():
            key = SELF_KINDS[kind]
            arrays.update({key: as_array(matrix), f"{key}_rows": np.array(rows, dtype=str),
                           f"{key}_columns": np.array(columns, dtype=str)})
        atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    else:
        raise UserError(f"cannot save attention to {path}: the name must end in .json or .npz")


def load_matrices(path) -> dict:
    """Read `save_matrices` output -> {"src_tokens", "tgt_tokens", "weights", "extra"} and, for
    each self-attention kind saved, {"encoder_self": {"rows", "columns", "weights"}, ...}."""
    path = Path(path)
    if path.suffix not in (".json", ".npz"):
        raise UserError(f"cannot read attention from {path}: the name must end in .json or .npz")
    found = {}
    try:
        if path.suffix == ".json":
            record = json.loads(path.read_text(encoding="utf-8"))
            weights = np.array(record["weights"], dtype=record["dtype"]).reshape(record["shape"])
            src, tgt, extra = record["src_tokens"], record["tgt_tokens"], record["extra"]
            for key in SELF_KINDS.values():
                if key in record:
                    part = record[key]
                    found[key] = {"rows": part["rows"], "columns": part["columns"],
                                  "weights": np.array(part["weights"]).reshape(part["shape"])}
        else:
            with np.load(path, allow_pickle=False) as data:
                weights = data["weights"]
                src, tgt = data["src_tokens"].tolist(), data["tgt_tokens"].tolist()
                extra = json.loads(str(data["extra"]))
                for key in SELF_KINDS.values():
                    if key in data:
                        found[key] = {"rows": data[f"{key}_rows"].tolist(),
                                      "columns": data[f"{key}_columns"].tolist(),
                                      "weights": data[key]}
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise UserError(f"{path} is not a saved attention file ({type(e).__name__}: {e})") from None
    return {"src_tokens": src, "tgt_tokens": tgt, "weights": weights, "extra": extra, **found}


def upsample(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) attention grid resized bicubically to (H, W) image pixels, negatives clipped."""
    from PIL import Image

    image = Image.fromarray(np.asarray(grid, dtype=np.float32), mode="F")
    resized = image.resize((size[1], size[0]), Image.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0, None)


@dataclass(frozen=True)
class PatchView:
    """One patch's self-attention over the patch grid, for an overlay panel: `grid` (h, w), the
    patch (row, column) outlined, and the regions it attended to as [(level, [(top, left,
    bottom, right) patch boxes])] (focal attention: level 0 fine, then coarser), if any."""

    title: str
    grid: np.ndarray
    patch: tuple[int, int]
    regions: tuple = ()


REGION_STYLES = (("lime", "-"), ("yellow", "--"), ("orange", ":"), ("magenta", "-."))


def _outline(ax, box: tuple[int, int, int, int], scale: tuple[float, float], colour: str,
             style: str) -> None:
    """A rectangle around patch box (top, left, bottom, right), in picture pixels."""
    top, left, bottom, right = box
    ys = np.array([top, top, bottom, bottom, top]) * scale[0] - 0.5
    xs = np.array([left, right, right, left, left]) * scale[1] - 0.5
    ax.plot(xs, ys, color=colour, linestyle=style, lw=1.5)


def plot_overlays(picture: np.ndarray, words: list[str], maps: np.ndarray,
                  gates: list[tuple[str, np.ndarray]], thetas: list[tuple[str, np.ndarray]],
                  path, title: str, patches: list[PatchView] = ()) -> None:
    """A grid of panels over an (H, W, 3) picture in [0, 1]: one per word (its attention over
    the region grid, upsampled), then any spatial gates (h, w) and spatial-transformer regions
    (theta (2, 3): the box the transformer samples, drawn in input coordinates), then any
    patch views (a patch's self-attention; focal regions outlined, finest solid)."""
    size = picture.shape[:2]
    panels = [(w.replace(WORD_START, "") or WORD_START, m) for w, m in zip(words, maps)] + gates
    panels += [(view.title, view.grid) for view in patches]
    columns = min(6, len(panels) + len(thetas))
    rows = -(-(len(panels) + len(thetas)) // columns)
    fig = new_figure(2.2 * columns, 2.4 * rows + 0.4)
    for i, (name, grid) in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1)
        up = upsample(grid, size)
        ax.imshow(picture)
        ax.imshow(up / max(up.max(), 1e-9), cmap="jet", alpha=0.45, extent=(0, size[1], size[0], 0))
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    for j, (name, theta) in enumerate(thetas):
        ax = fig.add_subplot(rows, columns, len(panels) + j + 1)
        ax.imshow(picture)
        corners = np.array([[-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1.0]])
        mapped = corners @ np.asarray(theta, dtype=np.float64).T  # output corners -> input coordinates
        ax.plot((mapped[:, 0] + 1) / 2 * size[1], (mapped[:, 1] + 1) / 2 * size[0], "y-", lw=2)
        ax.set_title(f"{name}: sampled region", fontsize=9)
        ax.axis("off")
    axes = fig.axes[len(panels) - len(patches):len(panels)]
    for ax, view in zip(axes, patches):
        scale = (size[0] / view.grid.shape[0], size[1] / view.grid.shape[1])
        for level, boxes in view.regions:
            colour, style = REGION_STYLES[min(level, len(REGION_STYLES) - 1)]
            for box in boxes:
                _outline(ax, box, scale, colour, style)
        row, col = view.patch
        _outline(ax, (row, col, row + 1, col + 1), scale, "white", "-")
        ax.set_xlim(-0.5, size[1] - 0.5)
        ax.set_ylim(size[0] - 0.5, -0.5)
    fig.suptitle(title, fontsize=11)
    save_figure(fig, path)

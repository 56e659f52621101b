"""Alignment helpers: word merging, layer/head choice, Pharaoh links, AER, rendering, files."""

import math
import re
import sys

import numpy as np
import pytest
import torch

from s2s.alignment import (alignment_error_rate, attention_stats, load_matrices, merge_pieces,
                           parse_alignment_line, pharaoh, plot_grid, plot_heatmap,
                           read_alignments, render_terminal, rollout, save_matrices, select,
                           span_accuracy, to_words, word_text)
from s2s.errors import UserError

# ----------------------------------------------------------------------------- pieces -> words


def test_merge_pieces_joins_continuations():
    pieces = ["▁New", "▁Yor", "k", "▁is", "▁big"]
    spans = merge_pieces(pieces)
    assert spans == [(0, 1), (1, 3), (3, 4), (4, 5)]
    assert word_text(pieces, spans) == ["New", "York", "is", "big"]


def test_merge_pieces_lone_word_start_and_special_tokens():
    pieces = ["▁", "4", ".", "▁July", "</s>"]
    spans = merge_pieces(pieces)
    assert spans == [(0, 3), (3, 4), (4, 5)]
    assert word_text(pieces, spans) == ["4.", "July", "</s>"]
    # a lone "▁" takes the next piece even when that one starts a word itself
    assert merge_pieces(["▁a", "▁", "▁b"]) == [(0, 1), (1, 3)]
    # special tokens stand alone, and a continuation after one starts a new word
    assert merge_pieces(["▁x", "<unk>", "ing", "</s>"]) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert merge_pieces(["k", "▁a"]) == [(0, 1), (1, 2)]
    assert merge_pieces(["▁a", "</s>", "▁"]) == [(0, 1), (1, 2), (2, 3)]


def test_to_words_sums_sources_and_averages_targets():
    tgt = ["▁a", "▁b", "c", "</s>"]
    src = ["▁x", "y", "▁z"]
    m = np.array([[0.5, 0.3, 0.2],
                  [0.1, 0.1, 0.8],
                  [0.6, 0.2, 0.2],
                  [0.0, 0.0, 1.0]])
    words = to_words(m, merge_pieces(tgt), merge_pieces(src))
    np.testing.assert_allclose(words, [[0.8, 0.2], [0.5, 0.5], [0.0, 1.0]])
    np.testing.assert_allclose(words.sum(-1), 1.0)


def test_to_words_works_over_leading_axes_and_checks_spans():
    rng = np.random.default_rng(0)
    w = rng.random((2, 3, 4, 3))  # (L, H, T, S)
    tgt_spans, src_spans = [(0, 1), (1, 3), (3, 4)], [(0, 2), (2, 3)]
    words = to_words(w, tgt_spans, src_spans)
    assert words.shape == (2, 3, 3, 2)
    np.testing.assert_allclose(words[1, 2], to_words(w[1, 2], tgt_spans, src_spans))
    np.testing.assert_allclose(to_words(torch.tensor(w), tgt_spans, src_spans), words, rtol=1e-6)
    with pytest.raises(UserError, match="source words cover 2 pieces but the matrix has 3"):
        to_words(w, tgt_spans, [(0, 2)])


# ----------------------------------------------------------------------------- select


def test_select_every_mode():
    w = np.arange(3 * 4 * 5 * 6, dtype=np.float32).reshape(3, 4, 5, 6)
    np.testing.assert_array_equal(select(w, 1, 2), w[1, 2])
    np.testing.assert_array_equal(select(w, -1, 0), w[2, 0])
    np.testing.assert_array_equal(select(w, "1", "-1"), w[1, 3])
    np.testing.assert_allclose(select(w, 0, "mean"), w[0].mean(0))
    np.testing.assert_array_equal(select(w, 0, "all"), w[0])
    np.testing.assert_array_equal(select(w, "all", 1), w[:, 1])
    np.testing.assert_allclose(select(w, "all", "mean"), w.mean(1))
    np.testing.assert_array_equal(select(w, "all", "all"), w)
    np.testing.assert_array_equal(select(torch.from_numpy(w), 2, 3), w[2, 3])
    assert select(w, 0, 0).shape == (5, 6)
    assert select(w, 0, "all").shape == (4, 5, 6)
    assert select(w, "all", "mean").shape == (3, 5, 6)


def test_select_errors_name_the_valid_range():
    w = np.zeros((3, 4, 2, 2))
    with pytest.raises(UserError, match=r"^layer 5 does not exist; this model has layers 0-2$"):
        select(w, 5, 0)
    with pytest.raises(UserError, match=r"^head -5 does not exist; this model has heads 0-3$"):
        select(w, 0, -5)
    with pytest.raises(UserError, match="head must be an index or 'mean' or 'all', not 'max'"):
        select(w, 0, "max")
    with pytest.raises(UserError, match="this model has only layer 0"):
        select(np.zeros((1, 1, 2, 2)), 1, 0)


# ----------------------------------------------------------------------------- Pharaoh links


def test_pharaoh_is_source_target_sorted_and_drops_eos():
    m = np.array([[0.1, 0.1, 0.8],   # target 0 -> source 2
                  [0.7, 0.2, 0.1],   # target 1 -> source 0
                  [0.1, 0.8, 0.1],   # target 2 -> source 1
                  [0.1, 0.1, 0.8]])  # </s> -> source 2
    assert pharaoh(m) == "0-1 1-2 2-0"
    assert pharaoh(m, drop_last_target=False) == "0-1 1-2 2-0 2-3"
    eye = np.eye(12)
    assert pharaoh(eye, drop_last_target=False) == " ".join(f"{i}-{i}" for i in range(12))
    padded = np.vstack([m[:2], np.zeros((1, 3)), m[3:]])  # a row with no weight gets no link
    assert pharaoh(padded) == "0-1 2-0"


# ----------------------------------------------------------------------------- gold and AER


def test_parse_every_accepted_format():
    sure, possible = parse_alignment_line("0-0 1?2 3-4-S 5-6-P 7-8-p 9-9-s", 1, "gold.txt")
    assert sure == {(0, 0), (3, 4), (9, 9)}
    assert possible == sure | {(1, 2), (5, 6), (7, 8)}
    assert parse_alignment_line("   ", 2, "gold.txt") == (set(), set())


@pytest.mark.parametrize("token", ["0-a", "1-2-X", "-1-2", "1:2", "1-", "1?2?3"])
def test_malformed_alignment_names_file_and_line(tmp_path, token):
    path = tmp_path / "gold.txt"
    path.write_text(f"0-0 1-1\n\n2-2 {token}\n", encoding="utf-8")
    message = f"{path}, line 3: cannot read alignment '{token}'"
    with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
        read_alignments(path)


def test_read_alignments(tmp_path):
    path = tmp_path / "gold.txt"
    path.write_text("0-0 1-1\n\n2?2\n", encoding="utf-8")
    assert read_alignments(path) == [({(0, 0), (1, 1)}, {(0, 0), (1, 1)}), (set(), set()),
                                     (set(), {(2, 2)})]
    with pytest.raises(UserError, match="cannot read .*missing.txt"):
        read_alignments(tmp_path / "missing.txt")


def test_alignment_error_rate_against_hand_computed_values():
    gold = [({(0, 0), (1, 1)}, {(0, 0), (1, 1), (2, 1)}),
            ({(0, 1)}, {(0, 1)})]
    # (2, 1) hits only a possible link, (2, 2) nothing, (1, 1) of sentence 1 is missed
    predicted = [{(0, 0), (2, 1), (2, 2)}, {(0, 1)}]
    scores = alignment_error_rate(predicted, gold)
    # |A| = 4, |S| = 3, |A∩S| = 2, |A∩P| = 3
    assert scores["precision"] == pytest.approx(3 / 4)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["aer"] == pytest.approx(1 - 5 / 7)
    perfect = alignment_error_rate([{(0, 0), (1, 1)}, {(0, 1)}], gold)
    assert (perfect["aer"], perfect["precision"], perfect["recall"]) == (0.0, 1.0, 1.0)
    # possible sets that leave out the sure links still count them
    assert alignment_error_rate([{(0, 0)}], [({(0, 0)}, set())])["aer"] == 0.0


def test_alignment_error_rate_length_mismatch():
    with pytest.raises(UserError, match="3 predicted alignments but 2 gold ones"):
        alignment_error_rate([set()] * 3, [(set(), set())] * 2)


# ----------------------------------------------------------------------------- statistics


def test_attention_stats_entropy_and_coverage():
    m = np.array([[0.2] * 5,
                  [0.0, 1.0, 0.0, 0.0, 0.0],
                  [0.0, 1.0, 0.0, 0.0, 0.0]])
    stats = attention_stats(m)
    assert stats["entropy"] == pytest.approx([math.log(5), 0.0, 0.0])
    assert stats["mean_entropy"] == pytest.approx(math.log(5) / 3)
    assert stats["coverage"] == pytest.approx([0.2, 2.2, 0.2, 0.2, 0.2])


def test_rollout_rows_sum_to_one_and_follow_the_residual_stream():
    rng = np.random.default_rng(0)
    w = rng.random((3, 2, 5, 5))
    w /= w.sum(-1, keepdims=True)  # (L, H, S, S), rows sum to 1
    r = rollout(w)
    assert r.shape == (5, 5)
    np.testing.assert_allclose(r.sum(-1), np.ones(5))
    one_layer = (w[0].mean(0) + np.eye(5)) / 2  # A = (mean over heads + I) / 2
    np.testing.assert_allclose(rollout(w[:1]), one_layer)
    np.testing.assert_allclose(rollout(np.tile(np.eye(5), (2, 2, 1, 1))), np.eye(5))
    with pytest.raises(UserError, match="rollout needs"):
        rollout(w[:, :, :4])


# ----------------------------------------------------------------------------- terminal


SRC = ["▁Ein", "▁Mann", "▁ausgesprochenlanges", "."]
TGT = ["▁A", "▁man", "▁averyveryverylongtargetword", "</s>"]


def _vertical_labels(text: str, n_src: int, n_tgt: int, cell: int = 2) -> list[str]:
    """Read the source labels back down the header columns of a colourless rendering."""
    lines = text.split("\n")
    header, rows = lines[:-n_tgt], lines[-n_tgt:]
    start = len(rows[0]) - cell * n_src
    return ["".join(line[start + cell * k] if len(line) > start + cell * k else " "
                    for line in header[1:]).rstrip() for k in range(n_src)]


def test_render_terminal_labels_rows_and_shades():
    m = np.eye(4)
    text = render_terminal(m, SRC, TGT, color=False)
    lines = text.split("\n")
    assert "\x1b" not in text
    rows = lines[-4:]
    header = lines[:-4]
    assert len(header) == 1 + 10  # legend + the longest source label cut to 10 lines
    for label, row in zip(TGT, rows):
        shown = label if len(label) <= 16 else label[:15] + "…"
        assert row.startswith(shown)
    assert _vertical_labels(text, 4, 4) == ["▁Ein", "▁Mann", "▁ausgespr…", "."]
    for k, row in enumerate(rows):  # the diagonal is full, everything else blank
        cells = row[-8:]
        assert cells == "  " * k + "██" + "  " * (3 - k)


def test_render_terminal_colour_and_many_tokens():
    rng = np.random.default_rng(0)
    src = [f"▁s{i}" for i in range(60)]
    tgt = [f"▁t{i}" for i in range(55)]
    m = rng.dirichlet(np.ones(60), size=55)
    coloured = render_terminal(m, src, tgt)
    assert "\x1b[38;5;16;48;5;" in coloured and coloured.count("\n") == 1 + 4 + 55 - 1
    assert all(line.endswith("\x1b[0m") for line in coloured.split("\n")[-55:])
    plain = render_terminal(m, src, tgt, color=False)
    assert _vertical_labels(plain, 60, 55) == src
    narrow = render_terminal(m, src, tgt, width_limit=40, color=False)
    assert max(len(line) for line in narrow.split("\n")) <= 40
    assert "source tokens 0-" in narrow and len(narrow.split("\n")) == 2 + 4 + 55
    with pytest.raises(UserError, match="does not match 55 target and 59 source tokens"):
        render_terminal(m, src[:59], tgt)


# ----------------------------------------------------------------------------- plots


def test_heatmap_files(tmp_path):
    m = np.random.default_rng(0).dirichlet(np.ones(4), size=4)
    for name in ("a.png", "a.svg"):
        fig = plot_heatmap(m, SRC, TGT, tmp_path / name, "test")
        assert (tmp_path / name).stat().st_size > 1000
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == SRC
        assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == TGT
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (tmp_path / "a.svg").read_text(encoding="utf-8")[:1000]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.svg"]  # no temp files
    with pytest.raises(UserError, match=r"\.png, \.svg or \.pdf"):
        plot_heatmap(m, SRC, TGT, tmp_path / "a.gif", "test")


def test_heatmap_with_many_tokens_scales_the_figure(tmp_path):
    m = np.random.default_rng(0).random((52, 55))
    big = plot_heatmap(m, [f"▁s{i}" for i in range(55)], [f"▁t{i}" for i in range(52)],
                       tmp_path / "b.png", "big")
    small = plot_heatmap(np.eye(4), SRC, TGT, tmp_path / "s.svg", "small")  # (svg is cheaper)
    assert big.get_size_inches()[0] > small.get_size_inches()[0] + 5
    assert len(big.axes[0].get_xticklabels()) == 55  # every token labelled
    assert (big.axes[0].get_xticklabels()[0].get_fontsize()
            < small.axes[0].get_xticklabels()[0].get_fontsize())


def test_grid_has_one_panel_per_layer_and_head(tmp_path):
    w = np.random.default_rng(0).dirichlet(np.ones(4), size=(2, 3, 4))  # (L, H, T, S)
    fig = plot_grid(w, SRC, TGT, tmp_path / "g.png", "grid")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 6
    assert [ax.get_title() for ax in panels[:3]] == ["head 0", "head 1", "head 2"]
    assert [panels[0].get_ylabel(), panels[3].get_ylabel()] == ["layer 0", "layer 1"]
    assert len({ax.images[0].get_clim() for ax in panels}) == 1  # one colour scale
    assert (tmp_path / "g.png").stat().st_size > 1000
    plot_grid(w, SRC, TGT, tmp_path / "g.svg", "grid")
    svg = (tmp_path / "g.svg").read_text(encoding="utf-8")
    assert svg.count('<g id="axes_') == 6 + 1  # panels and the colour bar


def test_plots_without_matplotlib_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(UserError, match=r'pip install "s2s\[plot\]"'):
        plot_heatmap(np.eye(4), SRC, TGT, tmp_path / "a.png", "t")


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_and_load_round_trip(tmp_path, suffix):
    w = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    src, tgt = ["▁Straße", "▁ist", "▁lang", "."], ["▁The", "▁street", "▁is", "</s>"]
    extra = {"model": "transformer", "step": 1200, "note": "ü"}
    save_matrices(tmp_path / f"a{suffix}", src, tgt, w, extra)
    back = load_matrices(tmp_path / f"a{suffix}")
    assert back["weights"].dtype == np.float32
    np.testing.assert_array_equal(back["weights"], w)
    assert (back["src_tokens"], back["tgt_tokens"], back["extra"]) == (src, tgt, extra)
    assert [p.name for p in tmp_path.iterdir()] == [f"a{suffix}"]


def test_save_and_load_errors(tmp_path):
    w = np.zeros((1, 1, 4, 4))
    with pytest.raises(UserError, match=r"must end in \.json or \.npz"):
        save_matrices(tmp_path / "a.txt", SRC, TGT, w, {})
    with pytest.raises(UserError, match=r"must end in \.json or \.npz"):
        load_matrices(tmp_path / "a.csv")
    with pytest.raises(UserError, match="does not match 4 target and 3 source tokens"):
        save_matrices(tmp_path / "a.json", SRC[:3], TGT, w, {})
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="bad.json is not a saved attention file"):
        load_matrices(tmp_path / "bad.json")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    with pytest.raises(UserError, match="bad.npz is not a saved attention file"):
        load_matrices(tmp_path / "bad.npz")
    with pytest.raises(UserError, match="cannot read"):
        load_matrices(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------- span accuracy


def test_span_accuracy_on_a_crafted_date():
    # source "4 July 1998": tokens "▁4" "▁July" "▁" "1998"; target "1998-07-04" one char a token
    src_spans = [(0, 1), (2, 6), (6, 7), (7, 11)]
    gold = {"year": (7, 11), "month": (2, 6), "day": (0, 1)}
    best = [3, 3, 3, 2, 1, 1, 1, 1, 0, 1, 3]  # the source token each target row attends most to
    m = np.full((11, 4), 0.1)
    m[np.arange(11), best] = 0.7
    positions = {"year": [0, 1, 2, 3], "month": [5, 6], "day": [8, 9, 20]}
    # year: row 3 looks at the space (6, 7), which only touches (7, 11); day: row 9 looks at
    # "July" and index 20 is past the end of the output, so both count as misses
    assert span_accuracy(m, src_spans, positions, gold) == {
        "year": (3, 4), "month": (2, 2), "day": (1, 3)}
    with pytest.raises(UserError, match="no gold span for field 'hour'"):
        span_accuracy(m, src_spans, {"hour": [0]}, gold)
    with pytest.raises(UserError, match="3 source character spans for 4 source tokens"):
        span_accuracy(m, src_spans[:3], positions, gold)

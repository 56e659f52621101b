"""Alignment (attention) matrices as people read them.

Pure array code, usable without a model:
- `words`: pieces -> words (the one rule), character spans of pieces;
- `metrics`: choosing layers and heads, Pharaoh links, gold alignments and AER, entropy and
  coverage, span accuracy, attention rollout;
- `render`: the terminal grid, heatmaps, grids of heads, image overlays, JSON/NPZ exports.
Code that needs a trained run:
- `forced`: the one teacher-forced pass under a `Recorder` that every view reads from;
- `probes`: corpus-specific checks (dates spans, shapes boxes).
"""

from s2s.alignment.metrics import (alignment_error_rate, attention_stats, corpus_attention_stats,
                                   parse_alignment_line, pharaoh, read_alignments, rollout, select,
                                   span_accuracy)
from s2s.alignment.render import (load_matrices, matrices_record, new_figure, plot_grid,
                                  plot_heatmap, plot_overlays, render_terminal, save_figure,
                                  save_matrices)
from s2s.alignment.words import char_spans, merge_pieces, to_words, word_text

__all__ = ["alignment_error_rate", "attention_stats", "char_spans", "corpus_attention_stats",
           "load_matrices", "matrices_record", "merge_pieces", "new_figure", "parse_alignment_line",
           "pharaoh", "plot_grid", "plot_heatmap", "plot_overlays", "read_alignments",
           "render_terminal", "rollout", "save_figure", "save_matrices", "select", "span_accuracy",
           "to_words", "word_text"]

"""Training curves of one or more runs, read from each run's metrics.jsonl (`s2s plot`).

A grid of panels, rows: training loss, learning rate, validation loss, validation score (the
run's `train.eval_metric`; BLEU when that is the loss); columns: against optimiser steps and
against wall-clock minutes (`elapsed`, data preparation and validation included). Every run is
one colour in every panel, so runs of different speeds compare fairly in the right column.
"""

from __future__ import annotations

import json
from pathlib import Path

from s2s.alignment import new_figure, save_figure
from s2s.errors import UserError
from s2s.recipe_files import read_yaml

METRICS_FILE, RECIPE_FILE = "metrics.jsonl", "recipe.yaml"
PANELS = [("train", "loss", "training loss"), ("train", "lr", "learning rate"),
          ("valid", "loss", "validation loss"), ("valid", "score", "validation score")]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of RUN/metrics.jsonl; a missing file or a broken line is a UserError."""
    path = Path(run_dir) / METRICS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path} not found: is {run_dir} a run directory that has trained?") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}, line {number}: not JSON ({e.msg})") from None
        if not isinstance(record, dict) or "kind" not in record or "step" not in record:
            raise UserError(f"{path}, line {number}: a metrics record needs 'kind' and 'step'")
        records.append(record)
    return records


def eval_metric(run_dir: str | Path) -> str:
    """The validation score a run picked its best checkpoint by (BLEU if it is the loss)."""
    path = Path(run_dir) / RECIPE_FILE
    metric = read_yaml(path).get("train", {}).get("eval_metric", "bleu") if path.is_file() else "bleu"
    return "bleu" if metric == "loss" else metric


def series(records: list[dict], kind: str, key: str) -> tuple[list[float], list[float], list[float]]:
    """(steps, minutes, values) of `kind` records that have `key`."""
    rows = [r for r in records if r.get("kind") == kind and isinstance(r.get(key), (int, float))]
    return ([r["step"] for r in rows], [r.get("elapsed", 0.0) / 60 for r in rows],
            [float(r[key]) for r in rows])


def run_labels(run_dirs: list) -> list[str]:
    """Each run's directory name, with its parent's when two runs share a name."""
    names = [Path(d).resolve().name for d in run_dirs]
    return [f"{Path(d).resolve().parent.name}/{n}" if names.count(n) > 1 else n
            for d, n in zip(run_dirs, names)]


def plot_runs(run_dirs: list, output) -> object:
    """Draw the curves of `run_dirs` into `output` (.png, .svg or .pdf); returns the figure."""
    if not run_dirs:
        raise UserError("give at least one run directory")
    runs = [(label, read_metrics(d), eval_metric(d)) for label, d in zip(run_labels(run_dirs), run_dirs)]
    fig = new_figure(11, 12)
    axes = fig.subplots(len(PANELS), 2, squeeze=False)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for row, (kind, key, title) in enumerate(PANELS):
        for column, x_label in enumerate(("step", "minutes")):
            ax = axes[row, column]
            for (label, records, metric), colour in zip(runs, colours):
                steps, minutes, values = series(records, kind, metric if key == "score" else key)
                name = f"{label} ({metric})" if key == "score" else label
                ax.plot(steps if column == 0 else minutes, values, color=colour, label=name,
                        marker="o" if kind == "valid" else None, markersize=3)
            ax.set_title(f"{title} by {x_label}", fontsize=10)
            ax.set_xlabel(x_label)
            ax.grid(alpha=0.3)
            if key == "lr":
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        axes[row, 0].legend(fontsize=8)
    save_figure(fig, output)
    return fig

"""What a task is: the data it trains on and what `translate`, `evaluate` and `inspect` mean for it.

A recipe's `task` names one (`s2s.tasks.TASKS`). The trainer and the CLI ask the task; nothing
else branches on which task a run is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from s2s.errors import UserError
from s2s.registry import Registry
from s2s.translate import DecodeOptions

TASKS: Registry = Registry("task")


@dataclass(frozen=True)
class InspectRequest:
    """What `s2s inspect` (and the explorer) asks for."""

    target: str | None = None  # force this output instead of decoding one
    output: Path | None = None  # .png .svg .pdf draw, .json .npz export
    kind: str = "cross"  # cross | encoder-self | decoder-self | encoder-rollout
    layer: int | str | None = None  # None: the kind's default
    head: int | str | None = None
    words: bool = False
    color: bool = True
    patch: tuple[int, int] | None = None  # images: this patch's self-attention in the encoder


class Task:
    """Defaults say, in one line, that a verb does not apply to this kind of run."""

    name = "task"

    def tokenizer_texts(self, raw, data) -> tuple[Iterable[str], Iterable[str]]:
        """Source and target texts to train the tokenizer on, from the raw training split."""
        raise NotImplementedError

    def split(self, raw, data, tokenizer, model, cache_dir: Path, name: str):
        """The split as the trainer and evaluation use it (lengths, batches, references)."""
        raise NotImplementedError

    def missing_rows(self, raw, data) -> int:
        """Rows of a raw split that hold no example (a missing source or target): left out."""
        return 0

    def evaluate(self, run, split: str, opts: DecodeOptions, metrics: tuple[str, ...],
                 pairs=None, baseline=None) -> tuple[dict, list[str]]:
        """Scores (sacreBLEU `metrics`) of the run on one of its recipe's splits, or on `pairs`
        (src and tgt columns) when given, and the hypotheses. `baseline` is (name, run, opts):
        another run to test the difference against (paired bootstrap)."""
        raise NotImplementedError

    def inspect(self, run, inputs: list[str], request: InspectRequest,
                opts: DecodeOptions) -> list[str]:
        """Lines to print for `s2s inspect RUN INPUTS...` (and files written)."""
        raise NotImplementedError

    def translate(self, run, chunks, opts: DecodeOptions, links=None):
        raise UserError(f"{run.dir} is a {self.name} run; `s2s translate` needs a translation run")

    def caption(self, run, images: list[str], opts: DecodeOptions):
        raise UserError(f"{run.dir} is a {self.name} run; `s2s caption` needs a captioning run")


def task_of(recipe) -> Task:
    return TASKS.get(recipe.task)()

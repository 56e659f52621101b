"""TensorBoard scalars of a training run (`train.tensorboard: true`).

The numbers of metrics.jsonl (training loss or reward, learning rate, speed; validation loss and
scores), written as they are logged with `torch.utils.tensorboard.SummaryWriter` into
RUN/tensorboard/, tagged "train/loss", "valid/bleu" and so on, against the optimiser step.
Rank 0 alone writes. `tensorboard --logdir runs/` then shows every run side by side.
"""

from __future__ import annotations

from pathlib import Path

from s2s.errors import UserError

TENSORBOARD_DIR = "tensorboard"
NOT_SCALARS = ("kind", "step", "epoch", "best")


class TensorBoardLog:
    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError('train.tensorboard needs the tensorboard package: '
                            'pip install "s2s[tensorboard]"') from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))

    def write(self, record: dict) -> None:
        """One metrics.jsonl record: each number becomes the scalar "{kind}/{key}" at its step."""
        for key, value in record.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])
        self.writer.flush()

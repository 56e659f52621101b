"""`s2s plot` (training curves from metrics.jsonl) and TensorBoard logging (`train.tensorboard`)."""

import sys

import pytest
from click.testing import CliRunner

from conftest import TINY
from s2s.cli import cli
from s2s.curves import plot_runs, read_metrics
from s2s.errors import UserError


def records(run_dir, kind, key):
    return [(r["step"], r[key]) for r in read_metrics(run_dir) if r["kind"] == kind and key in r]


def test_curves_of_several_runs_overlaid(trained_run, transformer_run, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    result = CliRunner().invoke(cli, ["plot", str(trained_run), str(transformer_run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 20_000
    fig = plot_runs([trained_run, transformer_run], tmp_path / "again.svg")
    by_title = {ax.get_title(): ax for ax in fig.axes}
    assert {"training loss by step", "learning rate by minutes", "validation loss by step",
            "validation score by minutes"} <= by_title.keys()
    for title, kind, key in [("training loss by step", "train", "loss"),
                             ("learning rate by step", "train", "lr"),
                             ("validation score by step", "valid", "exact")]:
        lines = by_title[title].get_lines()
        assert [line.get_label() for line in lines][0].startswith("tiny")
        assert list(zip(lines[0].get_xdata(), lines[0].get_ydata())) == records(trained_run, kind, key)
        assert len(lines) == 2  # both runs
    minutes = by_title["training loss by minutes"].get_lines()[0].get_xdata()
    elapsed = [r["elapsed"] / 60 for r in read_metrics(trained_run) if r["kind"] == "train"]
    assert list(minutes) == pytest.approx(elapsed)


def test_plot_mistakes_name_the_file(tmp_path):
    result = CliRunner().invoke(cli, ["plot", str(tmp_path), "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 2 and "metrics.jsonl not found" in result.output
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 2}\n{oops\n')
    with pytest.raises(UserError, match=r"metrics.jsonl, line 2: not JSON"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    result = CliRunner().invoke(cli, ["plot", str(tmp_path), "-o", str(tmp_path / "c.txt")])
    assert result.exit_code == 2 and ".png, .svg or .pdf" in result.output


def tiny_recipe(tensorboard: bool):
    from s2s.recipe import recipe_from_dict

    return recipe_from_dict({"name": "tb", **TINY, "train": {
        **TINY["train"], "max_steps": 20, "log_every": 10, "eval_every": 20, "tensorboard": tensorboard}})


def test_tensorboard_scalars_equal_the_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from s2s.train import train

    run_dir = tmp_path / "tb"
    train(tiny_recipe(True), run_dir, device="cpu", log=lambda *a: None)
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/tokens_per_s", "valid/loss", "valid/exact"} <= tags
    for tag in ("train/loss", "train/lr", "valid/loss", "valid/exact"):
        kind, key = tag.split("/")
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert logged == [(s, pytest.approx(v, rel=1e-6)) for s, v in records(run_dir, kind, key)]


def test_no_tensorboard_unless_asked(trained_run):
    assert "tensorboard: false" in (trained_run / "recipe.yaml").read_text()
    assert not (trained_run / "tensorboard").exists()


def test_tensorboard_without_the_package_is_one_line(tmp_path, monkeypatch):
    from s2s.train import train

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # the import fails
    with pytest.raises(UserError, match=r'train.tensorboard needs the tensorboard package: '
                                        r'pip install "s2s\[tensorboard\]"'):
        train(tiny_recipe(True), tmp_path / "tb", device="cpu", log=lambda *a: None)
    assert not (tmp_path / "tb" / "metrics.jsonl").exists()  # it stopped before training

"""Training: the loss goes down, checkpoints are atomic, and a resumed run is the same run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from s2s.checkpoint import WEIGHTS
from s2s.errors import UserError
from s2s.recipe import load_recipe
from s2s.run import load_run_recipe
from s2s.train import Trainer, train

QUIET = dict(device="cpu", log=lambda *a: None)
STEPS = ["train.max_steps=12", "train.eval_every=4", "train.log_every=1"]


def train_losses(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if r["kind"] == "train"}


def final_weights(run_dir):
    return load_file(str(run_dir / "checkpoints" / "last" / WEIGHTS))


def assert_same_run(a, b):
    assert train_losses(a) == pytest.approx(train_losses(b), rel=1e-6, abs=1e-7)
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-6, atol=1e-7, msg=key)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    from conftest import TINY, write_recipe

    folder = tmp_path_factory.mktemp("straight")
    recipe = load_recipe(str(write_recipe(folder / "tiny.yaml", TINY)), STEPS)
    train(recipe, folder / "run", **QUIET)
    return folder / "run", folder / "tiny.yaml"


def test_training_lowers_the_loss_and_keeps_best_and_last(straight_run):
    run_dir, _ = straight_run
    losses = train_losses(run_dir)
    assert losses[12] < 0.7 * losses[1]
    ckpts = run_dir / "checkpoints"
    assert (ckpts / "last").resolve().name == "step-00000012"
    assert (ckpts / "best" / WEIGHTS).is_file()
    valid = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()
             if '"valid"' in x]
    assert [v["step"] for v in valid] == [4, 8, 12]


def test_resume_continues_exactly(straight_run, tmp_path):
    run_dir, recipe_path = straight_run
    first = load_recipe(str(recipe_path), STEPS[:1] + STEPS[1:] + ["train.max_steps=6"])
    train(first, tmp_path / "run", **QUIET)
    assert max(train_losses(tmp_path / "run")) == 6
    train(load_recipe(str(recipe_path), STEPS), tmp_path / "run", resume=True, **QUIET)
    assert_same_run(run_dir, tmp_path / "run")
    assert load_run_recipe(tmp_path / "run").train.max_steps == 12  # the limit it went on with


def test_ctrl_c_saves_and_resume_continues_exactly(straight_run, tmp_path, monkeypatch):
    run_dir, recipe_path = straight_run
    recipe = load_recipe(str(recipe_path), STEPS)
    original = Trainer.train_step

    def interrupted(self, group):
        if self.progress.step == 6:  # Ctrl-C during step 7: the run stops after it
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, group)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(SystemExit) as stopped:
        train(recipe, tmp_path / "run", **QUIET)
    assert stopped.value.code == 130
    assert (tmp_path / "run" / "checkpoints" / "last").resolve().name == "step-00000007"
    monkeypatch.setattr(Trainer, "train_step", original)
    train(recipe, tmp_path / "run", resume=True, **QUIET)
    assert_same_run(run_dir, tmp_path / "run")


def test_a_crash_while_saving_leaves_the_last_checkpoint_whole(straight_run, tmp_path, monkeypatch):
    import s2s.checkpoint

    _, recipe_path = straight_run
    recipe = load_recipe(str(recipe_path), STEPS)

    def broken(model, path):
        open(path, "wb").write(b"half a file")
        raise OSError("disk full")

    original = s2s.checkpoint.save_model
    calls = {"n": 0}

    def second_save_breaks(model, path):
        calls["n"] += 1
        return broken(model, path) if calls["n"] == 2 else original(model, path)

    monkeypatch.setattr(s2s.checkpoint, "save_model", second_save_breaks)
    with pytest.raises(OSError):
        train(recipe, tmp_path / "run", **QUIET)
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "last").resolve().name == "step-00000004"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "last", "step-00000004"]
    load_file(str(ckpts / "last" / WEIGHTS))  # intact


def test_an_existing_run_is_never_overwritten_by_accident(straight_run):
    run_dir, recipe_path = straight_run
    with pytest.raises(UserError, match="--resume"):
        train(load_recipe(str(recipe_path), STEPS), run_dir, **QUIET)


def test_cooldown_takes_the_lr_linearly_down_to_min_lr_by_the_last_step():
    from s2s.recipe import TrainConfig
    from s2s.train import learning_rate

    cfg = TrainConfig(lr=1e-3, schedule="constant", max_steps=10, cooldown_steps=4, min_lr=1e-5)
    lrs = [learning_rate(cfg, step, 1.0) for step in range(1, 11)]
    assert lrs[:6] == [1e-3] * 6
    assert lrs[6:] == pytest.approx([1e-5 + (1e-3 - 1e-5) * k / 4 for k in (4, 3, 2, 1)])
    halved = learning_rate(cfg, 9, 0.5)  # a plateau halving carries into the cool-down
    assert halved == pytest.approx(1e-5 + (0.5e-3 - 1e-5) * 2 / 4)


def test_a_cooldown_longer_than_the_run_is_a_clear_error(tmp_path):
    from conftest import TINY, write_recipe

    with pytest.raises(UserError, match="cooldown_steps"):  # when the recipe is loaded
        load_recipe(str(write_recipe(tmp_path / "tiny.yaml", TINY)),
                    ["train.max_steps=5", "train.cooldown_steps=10"])
    with pytest.raises(UserError, match="cooldown_steps"):  # no time budget to end it either
        load_recipe(str(write_recipe(tmp_path / "tiny.yaml", TINY)),
                    ["train.max_steps=0", "train.max_epochs=1", "train.cooldown_steps=10"])


def test_under_a_time_budget_the_cooldown_ends_when_the_time_does(tmp_path):
    """max_minutes stops a run before max_steps on a slow machine: the cool-down must still end
    at the last step the budget allows (steps left estimated from the pace so far)."""
    from conftest import TINY, write_recipe
    from s2s.train import Trainer, learning_rate

    recipe = load_recipe(str(write_recipe(tmp_path / "tiny.yaml", TINY)),
                         ["train.max_steps=1000", "train.cooldown_steps=100", "train.max_minutes=1",
                          "train.schedule=constant", "train.warmup_steps=0"])
    trainer = Trainer(recipe, tmp_path / "run", **QUIET)
    trainer._pace_from = (0, 0.0)
    p = trainer.progress
    p.step, p.elapsed = 101, 50.0  # 100 steps took 50 s: 10 s of the budget = 20 more steps
    assert trainer.steps_left() == 20
    lr = learning_rate(recipe.train, p.step, 1.0, trainer.steps_left())
    assert lr == pytest.approx(recipe.train.lr * 21 / 100)
    p.step, p.elapsed = 101, 5.0  # fast: max_steps comes first
    assert trainer.steps_left() == 1000 - 101
    assert learning_rate(recipe.train, p.step, 1.0, trainer.steps_left()) == recipe.train.lr


def test_auto_precision_follows_torchs_amx_detection(monkeypatch):
    """`precision: auto` is bf16 on a CPU with AMX tiles (bf16 matmuls ~6x fp32 there) and fp32
    elsewhere; the detection must be the one this torch has (torch.cpu._is_amx_tile_supported)."""
    import torch

    from s2s.run import resolve_precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("fp32", cpu) == "fp32"



# -- the run directory under several processes -----------------------------------------------


def start_trainer(recipe, run_dir, *args):
    """`s2s train` in a child process (with this one's threads, so results are comparable)."""
    return subprocess.Popen([sys.executable, "-m", "s2s", "train", str(recipe), "--run-dir",
                             str(run_dir), "--device", "cpu", *args],
                            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
                            text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(condition, proc, timeout=60.0):
    """Poll `condition` while `proc` runs; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    proc.kill()
    pytest.fail("timed out waiting for the trainer")


def metric_lines(run_dir):
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_one_trainer_per_run_directory(tmp_path):
    from conftest import TINY, write_recipe

    recipe, run_dir = write_recipe(tmp_path / "tiny.yaml", TINY), tmp_path / "run"
    first = start_trainer(recipe, run_dir, "--set", "train.max_steps=100000")
    try:
        assert wait_until(lambda: (run_dir / "recipe.yaml").exists(), first), first.communicate()
        first.send_signal(signal.SIGSTOP)  # paused, it holds the lock and leaves the CPU free
        for extra in ([], ["--resume"], ["--overwrite"]):
            second = subprocess.run([sys.executable, "-m", "s2s", "train", str(recipe), "--run-dir",
                                     str(run_dir), "--device", "cpu", "--set", "train.max_steps=2",
                                     *extra], capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, (extra, second.stdout, second.stderr)
            assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert first.poll() is None  # the first one is untouched, and so is its directory
        assert (run_dir / "recipe.yaml").exists()
    finally:
        first.kill()  # SIGKILL: no clean-up code runs
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    # the kernel dropped the dead process's lock: the next run is not blocked
    train(load_recipe(str(recipe), ["train.max_steps=2", "train.eval_every=2"]), run_dir,
          overwrite=True, **QUIET)
    assert (run_dir / "checkpoints" / "last").resolve().name == "step-00000002"


def test_ctrl_c_at_any_moment_then_resume_is_the_same_run(straight_run, tmp_path):
    """SIGINT lands wherever it lands (inside a step, inside the optimiser); the run stops at the
    next step boundary, and --resume continues bit for bit."""
    reference, recipe = straight_run
    run_dir, sets = tmp_path / "run", [a for s in STEPS for a in ("--set", s)]
    moments = []
    for attempt in range(3):
        proc = start_trainer(recipe, run_dir, *sets, *(["--resume"] if attempt else []))
        lines_before, more = metric_lines(run_dir), random.randint(1, 3)
        if not wait_until(lambda: metric_lines(run_dir) >= lines_before + more, proc):
            break  # finished before the signal
        time.sleep(random.uniform(0.0, 0.1))
        moments.append((metric_lines(run_dir), more))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 130), err
        assert "Traceback" not in err, err
        if proc.returncode == 0:
            break
    assert moments, "the run ended before any signal"
    final = start_trainer(recipe, run_dir, *sets, "--resume")
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    assert train_losses(run_dir) == train_losses(reference), moments
    wa, wb = final_weights(reference), final_weights(run_dir)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), moments


def test_a_second_ctrl_c_stops_at_once():
    from s2s.train import _StopOnSignal

    stop = _StopOnSignal()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs in the main thread between bytecodes
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_run_killed_while_writing_its_first_checkpoint_starts_afresh(tmp_path):
    from conftest import TINY, write_recipe

    recipe = load_recipe(str(write_recipe(tmp_path / "tiny.yaml", TINY)),
                         ["train.max_steps=2", "train.eval_every=2"])
    ckpts = tmp_path / "run" / "checkpoints"
    half = ckpts / ".step-00000004.k2x9"  # what a kill during the first save leaves
    half.mkdir(parents=True)
    (half / WEIGHTS).write_bytes(b"half a file")
    os.symlink("step-00000004", ckpts / ".last.4242")
    (ckpts / ".best.4242").write_text("")
    with pytest.raises(UserError, match="nothing to resume"):
        train(recipe, tmp_path / "run", resume=True, **QUIET)
    train(recipe, tmp_path / "run", **QUIET)  # not "use --resume": there was no run
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "last", "step-00000002"]


def test_resaving_a_step_never_leaves_it_half_deleted(tmp_path, monkeypatch):
    import s2s.checkpoint
    from s2s.checkpoint import TRAINER, save_checkpoint

    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path, 7, model, {"step": 7})
    real_rmtree = s2s.checkpoint.shutil.rmtree

    def killed_while_deleting(path, *args, **kwargs):
        next(p for p in sorted(Path(path).rglob("*")) if p.is_file()).unlink()  # one file gone,
        raise KeyboardInterrupt  # then the kill

    monkeypatch.setattr(s2s.checkpoint.shutil, "rmtree", killed_while_deleting)
    with torch.no_grad():
        model.weight.fill_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 7, model, {"step": 7})
    monkeypatch.setattr(s2s.checkpoint.shutil, "rmtree", real_rmtree)
    last = tmp_path / "last"
    assert last.resolve().name == "step-00000007"
    assert torch.equal(load_file(str(last / WEIGHTS))["weight"], torch.ones(2, 3))
    assert torch.load(last / TRAINER, weights_only=True) == {"step": 7}


def test_a_step_renamed_aside_by_a_killed_resave_is_put_back(tmp_path):
    from s2s.checkpoint import remove_stale_temps, save_checkpoint

    save_checkpoint(tmp_path, 7, torch.nn.Linear(3, 2), {"step": 7})
    aside = tmp_path / ".step-00000007.old.k2x9"  # a re-save renames the old copy aside first
    aside.mkdir()
    os.replace(tmp_path / "step-00000007", aside / "step-00000007")  # killed here
    remove_stale_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last", "step-00000007"]
    load_file(str(tmp_path / "last" / WEIGHTS))


def metric_records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("saved_by", ["this version", "an older version"])
def test_resuming_a_finished_run_changes_nothing(straight_run, tmp_path, saved_by):
    """Also for a checkpoint from before trainer states recorded the last validated step."""
    import shutil

    from click.testing import CliRunner

    from s2s.cli import cli

    run_dir = tmp_path / "run"
    shutil.copytree(straight_run[0], run_dir, symlinks=True)
    if saved_by == "an older version":
        state_file = run_dir / "checkpoints" / "last" / "trainer.pt"
        state = torch.load(state_file, weights_only=True)
        del state["progress"]["validated"]
        torch.save(state, state_file)
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    ckpts = {p.name: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()}
    result = CliRunner().invoke(cli, ["train", str(run_dir), "--resume", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "already finished" in result.output
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").iterdir()} == ckpts


def test_metrics_hold_each_step_once_after_a_resume(straight_run, tmp_path):
    """Killed after logging steps 9-12 but before saving step 12: the resumed run logs them
    again, and the lines of the lost steps are gone."""
    import shutil

    from s2s.checkpoint import set_pointer

    reference, recipe_path = straight_run
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir, symlinks=True)
    shutil.rmtree(run_dir / "checkpoints" / "step-00000012")
    set_pointer(run_dir / "checkpoints", "last", "step-00000008")
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 13, "lo')  # half a line, as a kill leaves it
    train(load_recipe(str(recipe_path), STEPS), run_dir, resume=True, **QUIET)
    records = metric_records(run_dir)
    for kind in ("train", "valid"):
        steps = [r["step"] for r in records if r["kind"] == kind]
        assert steps == sorted(set(steps)), kind
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 13))
    assert train_losses(run_dir) == pytest.approx(train_losses(reference), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("failure", [
    OSError(28, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
    RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing "
                 "file data/2: file write failed"),
])
def test_a_full_disk_is_one_line_and_the_last_checkpoint_stays(straight_run, tmp_path,
                                                                 monkeypatch, failure):
    import s2s.checkpoint
    from click.testing import CliRunner

    from s2s.cli import cli

    _, recipe_path = straight_run
    calls = {"n": 0}
    original = s2s.checkpoint.torch.save

    def disk_fills_up(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            open(path, "wb").write(b"part of")
            raise failure
        return original(obj, path, *args, **kwargs)

    monkeypatch.setattr(s2s.checkpoint.torch, "save", disk_fills_up)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(recipe_path), "--run-dir", str(run_dir),
                                      "--device", "cpu", *[a for s in STEPS for a in ("--set", s)]])
    monkeypatch.setattr(s2s.checkpoint.torch, "save", original)
    assert result.exit_code == 2, result.output
    errors = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and str(run_dir) in errors[0] and "MB" in errors[0], result.output
    assert "no space" in errors[0].lower()
    ckpts = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "last", "step-00000004"]
    load_file(str(ckpts / "last" / WEIGHTS))


def test_safetensors_out_of_space_is_recognised():
    from safetensors import SafetensorError

    from s2s.checkpoint import out_of_space

    full = "Error while serializing: I/O error: No space left on device (os error 28)"
    assert out_of_space(SafetensorError(full))
    assert not out_of_space(SafetensorError("Error while serializing: invalid tensor"))
    assert not out_of_space(RuntimeError("CUDA out of memory"))

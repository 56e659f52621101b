"""The `s2s` command end to end, and every user mistake as one line with exit code 2."""

import json

import pytest
import torch
from click.testing import CliRunner

from s2s.cli import cli


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def test_train_translate_evaluate(tiny_recipe, tmp_path):
    run_dir = tmp_path / "run"
    result = run("train", tiny_recipe, "--run-dir", run_dir, "--set", "train.max_steps=20",
                 "--set", "train.eval_every=10", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "valid step 20" in result.output and "BLEU" in result.output and "exact" in result.output
    assert (run_dir / "recipe.yaml").is_file() and (run_dir / "tokenizer" / "joint.model").is_file()

    result = run("translate", run_dir, "4 July 1998", "le 1er juillet 2003")
    assert result.exit_code == 0 and len(result.output.splitlines()) == 2

    result = run("evaluate", run_dir, "--split", "test", "--json", "--beam", "1")
    scores = json.loads(result.output)
    assert {"bleu", "chrf", "exact", "bleu_signature"} <= scores.keys()
    assert scores["sentences"] == 100


def test_translation_is_a_line_filter(trained_run):
    lines = ["Saturday, 4 July 1998", "", "7/4/98", "   ", "4. Juli 1998"]
    result = run("translate", trained_run, "--batch-size", "2", input="\n".join(lines) + "\n")
    out = result.output.splitlines()
    assert result.exit_code == 0
    assert len(out) == len(lines) and out[1] == "" and out[3] == ""
    alone = [run("translate", trained_run, line).output.strip() for line in lines if line.strip()]
    assert [o for o in out if o] == alone  # batching and sorting do not change results


def test_n_best_prints_scores_and_files_work(trained_run, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("4 July 1998\n\n12/25/99\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    result = run("translate", trained_run, "-i", src, "-o", out, "--beam", "3", "--n-best", "2")
    assert result.exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6  # two per input line
    text, score = lines[0].split("\t")
    assert float(score) <= 0 and float(lines[0].split("\t")[1]) >= float(lines[1].split("\t")[1])


def test_beam_one_translates_like_greedy(trained_run):
    text = ["Saturday, 4 July 1998", "le 3 mars 1911", "14.2.83"]
    greedy = run("translate", trained_run, "--beam", "1", *text).output
    assert greedy == run("translate", trained_run, "--beam", "1", "--batch-size", "1", *text).output


def test_scoring_files_without_a_model(tmp_path):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("a cat sat on the mat\nhello world\n")
    ref.write_text("a cat sat on the mat\nhello there world\n")
    result = run("evaluate", "--hyp", hyp, "--ref", ref)
    assert result.exit_code == 0 and "BLEU" in result.output and "exact  50.00%" in result.output


def test_recipes_lists_every_recipe():
    result = run("recipes")
    assert result.exit_code == 0
    for name in ("dates-rnn-bahdanau", "dates-rnn-luong", "dates-rnn-none",
                 "multi30k-de-en-rnn-bahdanau"):
        assert name in result.output


# -- mistakes --------------------------------------------------------------------------------


def assert_user_error(result, message):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.output


def test_training_mistakes(tiny_recipe, tmp_path):
    assert_user_error(run("train", "no-such-recipe"), "unknown recipe 'no-such-recipe'")
    assert_user_error(run("train", tiny_recipe, "--set", "train.mx_steps=3"),
                      "unknown recipe key 'train.mx_steps' (did you mean \"max_steps\"?)")
    assert_user_error(run("train", tiny_recipe, "--set", "train.lr=x"), "'train.lr' needs a float")
    assert_user_error(run("train", tiny_recipe, "--run-dir", tmp_path / "a", "--set",
                          "data.path=/missing/folder"), "data path not found: /missing/folder")
    assert_user_error(run("train", tiny_recipe, "--run-dir", tmp_path / "b", "--set",
                          "data.src=nope"), "column 'nope' not found")
    assert_user_error(run("train", tiny_recipe, "--run-dir", tmp_path / "c", "--resume"),
                      "nothing to resume")


def test_checkpoint_mistakes(trained_run, tmp_path):
    import shutil

    assert_user_error(run("translate", tmp_path, "x"), "is not a run directory")
    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken, symlinks=True)
    shutil.rmtree(broken / "checkpoints")
    assert_user_error(run("translate", broken, "x"), "no checkpoint 'best'")
    shutil.copytree(trained_run / "checkpoints", broken / "checkpoints", symlinks=True)
    weights = broken / "checkpoints" / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as after a crash
    assert_user_error(run("translate", broken, "x"), "is corrupt or incomplete")


def test_input_mistakes(trained_run, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"4 July 1998\n\xff\xfe broken\n")
    out = tmp_path / "out.txt"
    assert_user_error(run("translate", trained_run, "-i", bad, "-o", out), "line 2: not valid UTF-8")
    assert not out.exists()  # nothing half-written
    assert_user_error(run("translate", trained_run, "-i", tmp_path / "missing.txt"), "cannot read")
    assert_user_error(run("translate", trained_run, "x" * 3000), "more than the 1024 allowed")
    assert_user_error(run("evaluate", trained_run, "--split", "dev"), "--split must be")
    assert_user_error(run("evaluate", "--hyp", bad), "--hyp and --ref go together")
    assert_user_error(run("translate", trained_run, "--device", "tpu", "x"), "--device must be")


def test_average_checkpoints(trained_run):
    from safetensors.torch import load_file

    result = run("average", trained_run, "--last", "2")
    assert result.exit_code == 0, result.output
    ckpts = trained_run / "checkpoints"
    steps = sorted(ckpts.glob("step-*"))[-2:]
    a, b = (load_file(str(s / "model.safetensors")) for s in steps)
    avg = load_file(str(ckpts / "average-last2" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(avg[key], (a[key] + b[key]) / 2)
    assert run("translate", trained_run, "--checkpoint", "average-last2", "4 July 1998").exit_code == 0
    assert_user_error(run("average", trained_run, "--last", "50"), "cannot average the last 50")


@pytest.mark.parametrize("name", ["../../victim", "VICTIM", "sub/dir", "..", ".hidden",
                                  "last", "best", "step-00000120"])
def test_average_name_is_a_plain_new_checkpoint_name(trained_run, tmp_path, name):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir, symlinks=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    name = str(victim) if name == "VICTIM" else name
    ckpts = run_dir / "checkpoints"
    before = {p.name: (p.is_symlink() and p.resolve().name) for p in ckpts.iterdir()}
    steps = {p.name: sorted(q.name for q in p.iterdir()) for p in ckpts.glob("step-*")}
    assert_user_error(run("average", run_dir, "--last", "2", "--name", name), "--name")
    assert (victim / "precious.txt").read_text() == "keep me"
    assert {p.name: (p.is_symlink() and p.resolve().name) for p in ckpts.iterdir()} == before
    assert {p.name: sorted(q.name for q in p.iterdir()) for p in ckpts.glob("step-*")} == steps


def test_output_file_mistakes(trained_run, tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "out.txt"
    assert_user_error(run("translate", trained_run, "4 July 1998", "-o", missing), str(missing.parent))
    assert_user_error(run("translate", trained_run, "4 July 1998", "-o", tmp_path), "is a directory")
    assert_user_error(run("evaluate", trained_run, "--split", "test", "-o", tmp_path),
                      "is a directory")
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_scoring_empty_files_is_one_line(tmp_path):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("")
    ref.write_text("")
    assert_user_error(run("evaluate", "--hyp", hyp, "--ref", ref), "hyp.txt")


@pytest.fixture(scope="module")
def external_test_set(trained_run, tmp_path_factory):
    """Twenty sentence pairs of the run's test split, as plain text files."""
    from s2s.data.corpus import load_split, text_pairs
    from s2s.run import load_run_recipe

    data = load_run_recipe(trained_run).data
    pairs = text_pairs(load_split(data, "test"), data)[:20]
    folder = tmp_path_factory.mktemp("external")
    (folder / "src.txt").write_text("".join(s + "\n" for s in pairs["src"]), encoding="utf-8")
    (folder / "ref.txt").write_text("".join(t + "\n" for t in pairs["tgt"]), encoding="utf-8")
    return folder / "src.txt", folder / "ref.txt"


def test_evaluate_translates_an_external_test_set(trained_run, external_test_set, tmp_path):
    src, ref = external_test_set
    result = run("evaluate", trained_run, "--src", src, "--ref", ref, "--beam", "1", "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["sentences"] == 20 and str(src) in scores["data"]
    hyp = tmp_path / "hyp.txt"
    assert run("translate", trained_run, "-i", src, "-o", hyp, "--beam", "1").exit_code == 0
    same = json.loads(run("evaluate", "--hyp", hyp, "--ref", ref, "--json").output)
    assert scores["bleu"] == same["bleu"] and scores["chrf"] == same["chrf"]
    short = tmp_path / "short.txt"
    short.write_text("".join(ref.read_text().splitlines(keepends=True)[:19]))
    assert_user_error(run("evaluate", trained_run, "--src", src, "--ref", short),
                      f"{src} has 20 lines but {short} has 19")
    assert_user_error(run("evaluate", trained_run, "--src", src), "--src and --ref go together")


def test_ter_is_reported_with_its_signature(tmp_path):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("a cat sat on the mat\nhello world\n")
    ref.write_text("a cat sat on the mat\nhello there world\n")
    result = run("evaluate", "--hyp", hyp, "--ref", ref, "--metrics", "bleu,chrf,ter")
    assert result.exit_code == 0, result.output
    ter = [x for x in result.output.splitlines() if x.startswith("TER")]
    assert len(ter) == 1 and "11.11" in ter[0] and "tok:tercom" in ter[0], result.output
    only = run("evaluate", "--hyp", hyp, "--ref", ref, "--metrics", "ter", "--json")
    assert {"ter", "ter_signature"} <= json.loads(only.output).keys()
    assert "bleu" not in json.loads(only.output)
    assert_user_error(run("evaluate", "--hyp", hyp, "--ref", ref, "--metrics", "bleu,meteor"),
                      "meteor")


def test_paired_bootstrap_between_two_runs(trained_run, tmp_path):
    import shutil

    from s2s.checkpoint import set_pointer

    other = tmp_path / "other"
    shutil.copytree(trained_run, other, symlinks=True)
    set_pointer(other / "checkpoints", "best", "step-00000060")  # an earlier, weaker model
    result = run("evaluate", trained_run, "--paired-bootstrap", other, "--metrics",
                 "bleu,chrf,ter", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert "ter" in report
    paired = report["paired_bootstrap"]
    assert paired["baseline"] == str(other) and paired["samples"] == 1000
    for metric in ("bleu", "chrf", "ter"):
        base, system = paired[metric]["baseline"], paired[metric]["system"]
        assert system["score"] == pytest.approx(report[metric], abs=1e-9)
        assert 0 < system["p_value"] <= 1 and system["ci"] >= 0 and base["ci"] >= 0
        assert "bs:1000" in paired[metric]["signature"]
    alone = json.loads(run("evaluate", other, "--metrics", "bleu,chrf,ter", "--json").output)
    for metric in ("bleu", "chrf", "ter"):
        assert paired[metric]["baseline"]["score"] == pytest.approx(alone[metric], abs=1e-9)
    text = run("evaluate", trained_run, "--paired-bootstrap", other).output.splitlines()
    assert text[-9].startswith("paired bootstrap resampling (1000 resamples)"), text
    assert text[-8].startswith("BLEU") and str(other) in text[-8] and "±" in text[-8]
    assert str(trained_run) in text[-7] and "(p = " in text[-7] and "bs:1000" in text[-6]


def test_translate_answers_each_piped_line_without_waiting_for_more(trained_run):
    """A co-process: write one line, read its translation, repeat (the pipe stays open)."""
    import os
    import select
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "s2s", "translate", str(trained_run),
                             "--device", "cpu", "--beam", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
                            text=True, bufsize=1)
    try:
        for text in ("4 July 1998", "12/25/99", "le 1er juillet 2003"):
            proc.stdin.write(text + "\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, f"no answer to {text!r} within 60 s while the pipe stays open"
            assert proc.stdout.readline().strip()
        proc.stdin.close()
        assert proc.stdout.read() == "" and proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_lines_that_arrive_fast_still_fill_whole_chunks():
    import time

    from s2s.cli_io import available_chunks

    lines = [f"line {i}" for i in range(95)]
    chunks = available_chunks(iter(lines), 10)
    first = next(chunks)
    time.sleep(0.3)  # translating the first chunk: the reader gets ahead meanwhile
    rest = list(chunks)
    assert first + [x for c in rest for x in c] == lines
    assert [len(c) for c in rest[:-1]] == [10] * (len(rest) - 1)

"""Inspection from a user's seat: alignment matrices of trained RNN and Transformer runs, the
`inspect` views and exports, `translate --align`, `evaluate --alignments`, and their mistakes."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from s2s.alignment.forced import align, forced_weights
from s2s.attention import record_attention
from s2s.cli import cli
from s2s.data.tokenizer import BOS, EOS
from s2s.run import Run

SENTENCE = "Saturday, 4 July 1998"


@pytest.fixture(params=["rnn", "transformer"])
def run_dir(request, trained_run, transformer_run):
    return trained_run if request.param == "rnn" else transformer_run


def invoke(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def free_greedy(run: Run, src_ids: list[int], limit: int = 40):
    """Greedy decoding one step at a time, keeping the attention each step actually used."""
    src = torch.tensor([src_ids])
    mask = torch.ones_like(src, dtype=torch.bool)
    prev, out, rows = torch.tensor([BOS]), [], []
    with torch.inference_mode(), record_attention():
        state = run.model.encode(src, mask)
        for _ in range(limit):
            logits, state, weights = run.model.step(state, prev)
            rows.append(weights[0, :, :, 0].numpy())  # (layers, heads, S)
            prev = logits.argmax(-1)
            if prev.item() == EOS:
                break
            out.append(prev.item())
    return out, np.stack(rows, axis=2)  # (layers, heads, T + 1, S)


def test_forced_matrices_equal_the_weights_of_free_decoding(run_dir):
    run = Run.open(run_dir, device="cpu")
    src_ids = run.tokenizer.encode_src([SENTENCE])[0]
    output, recorded = free_greedy(run, src_ids)
    forced = forced_weights(run, [src_ids], [output])[0]
    assert forced.shape[2] == len(output) + 1  # one row per output token and one for </s>
    forced = forced[:, :, :recorded.shape[2]]  # all of them unless decoding hit the limit
    np.testing.assert_allclose(forced, recorded, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(forced.sum(-1), 1.0, rtol=1e-5)


def test_align_rows_are_target_pieces_plus_end_of_sentence(run_dir):
    run = Run.open(run_dir, device="cpu")
    item = align(run, [SENTENCE], ["1998-07-04"])[0]
    assert item.tgt_pieces[-1] == "</s>"
    assert item.weights.shape[-2:] == (len(item.tgt_pieces), len(item.src_pieces))


def test_inspect_shows_a_labelled_grid_in_the_terminal(trained_run):
    result = invoke("inspect", trained_run, SENTENCE, "--target", "1998-07-04", "--no-color")
    assert result.exit_code == 0, result.output
    assert "J" in result.output and "1" in result.output  # source and target labels
    assert "\x1b[" not in result.output  # --no-color: plain text


def test_inspect_exports_every_layer_and_head(transformer_run, tmp_path):
    out = tmp_path / "m.json"
    result = invoke("inspect", transformer_run, SENTENCE, "--target", "1998-07-04", "-o", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    weights = np.array(data["weights"])
    assert weights.shape[:2] == (2, 2)  # layers x heads
    assert weights.shape[-1] == len(data["src_tokens"])
    assert weights.shape[-2] == len(data["tgt_tokens"])
    npz = tmp_path / "m.npz"
    assert invoke("inspect", transformer_run, SENTENCE, "--target", "1998-07-04", "-o", npz).exit_code == 0
    with np.load(npz) as arrays:
        np.testing.assert_allclose(arrays["weights"], weights, rtol=1e-6)


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_inspect_draws_heatmaps_and_a_grid_of_heads(transformer_run, tmp_path):
    pytest.importorskip("matplotlib")
    files = {name: tmp_path / f"{name}.png" for name in ("one", "column", "grid")}
    for name, (layer, head) in {"one": ("1", "0"), "column": ("all", "0"), "grid": ("all", "all")}.items():
        result = invoke("inspect", transformer_run, SENTENCE, "-o", files[name], "--layer", layer,
                        "--head", head)
        assert result.exit_code == 0, result.output
    (w1, h1), (wc, hc), (wg, hg) = (png_size(files[n]) for n in ("one", "column", "grid"))
    assert hc > h1  # two layers stacked
    assert wg > wc and hg == hc  # two heads side by side


@pytest.mark.parametrize("args, message", [
    (["   "], "empty"),
    ([SENTENCE, "--layer", "7"], "layer"),
    ([SENTENCE, "--head", "nine"], "head"),
])
def test_inspect_mistakes(transformer_run, args, message):
    result = invoke("inspect", transformer_run, *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_translate_align_appends_pharaoh_links(run_dir):
    result = invoke("translate", run_dir, "--align", input=f"{SENTENCE}\n\n7/4/98\n")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3 and lines[1] == ""
    for line in (lines[0], lines[2]):
        text, links = line.split(" ||| ")
        pairs = [tuple(map(int, link.split("-"))) for link in links.split()]
        targets = sorted(t for _, t in pairs)
        assert targets == list(range(len(text.split())))  # each target word links once
        assert all(0 <= s < 10 for s, _ in pairs)


def test_evaluate_alignments_scores_aer_and_names_bad_lines(trained_run, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("4 July 1998\t1998-07-04\n7/4/98\t1998-07-04\n", encoding="utf-8")
    gold = tmp_path / "gold.txt"
    gold.write_text("2-0\n0?0\n", encoding="utf-8")
    result = invoke("evaluate", trained_run, "--alignments", gold, "--data", pairs, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert 0.0 <= report["aer"] <= 100.0
    gold.write_text("2-0\n0x0\n", encoding="utf-8")
    bad = invoke("evaluate", trained_run, "--alignments", gold, "--data", pairs)
    assert bad.exit_code == 2 and "gold.txt" in bad.output and "line 2" in bad.output
    gold.write_text("2-0\n", encoding="utf-8")
    short = invoke("evaluate", trained_run, "--alignments", gold, "--data", pairs)
    assert short.exit_code == 2 and "Traceback" not in short.output


def test_evaluate_reports_dates_alignment_accuracy_and_attention_statistics(trained_run):
    result = invoke("evaluate", trained_run, "--split", "test", "--beam", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    dates = report["dates_alignment"]
    assert 0.0 <= dates["accuracy"] <= 100.0 and dates["default"] == "layer 0 head 0"
    assert report["attention"]["mean_entropy"] >= 0.0


def test_every_head_of_every_kind_is_recorded(transformer_run):
    run = Run.open(transformer_run, device="cpu")
    item = align(run, [SENTENCE], ["1998-07-04"])[0]
    s, t = len(item.src_pieces), len(item.tgt_pieces)
    assert item.kinds["cross"].shape == (2, 2, t, s)
    assert item.kinds["encoder-self"].shape == (2, 2, s, s)
    assert item.kinds["decoder-self"].shape == (2, 2, t, t)
    for weights in item.kinds.values():
        np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    causal = item.kinds["decoder-self"]
    assert np.triu(causal, k=1).max() == 0  # no step looks at a later target position


@pytest.mark.parametrize("kind", ["encoder-self", "decoder-self", "encoder-rollout"])
def test_inspect_shows_self_attention_and_rollout(transformer_run, kind):
    result = invoke("inspect", transformer_run, SENTENCE, "--target", "1998-07-04", "--kind", kind,
                    "--no-color")
    assert result.exit_code == 0, result.output
    assert (kind in result.output.splitlines()[0]) or kind == "encoder-rollout"


def test_exports_hold_every_kind(transformer_run, tmp_path):
    from s2s.alignment import load_matrices, rollout

    for suffix in ("json", "npz"):
        out = tmp_path / f"m.{suffix}"
        result = invoke("inspect", transformer_run, SENTENCE, "--target", "1998-07-04", "-o", out)
        assert result.exit_code == 0, result.output
        saved = load_matrices(out)
        s, t = len(saved["src_tokens"]), len(saved["tgt_tokens"])
        assert saved["encoder_self"]["weights"].shape == (2, 2, s, s)
        assert saved["decoder_self"]["weights"].shape == (2, 2, t, t)
        assert saved["decoder_self"]["columns"][0] == "<s>"
        np.testing.assert_allclose(rollout(saved["encoder_self"]["weights"]).sum(-1), 1.0)


def test_an_rnn_has_no_self_attention_to_show(trained_run):
    result = invoke("inspect", trained_run, SENTENCE, "--kind", "encoder-self")
    assert result.exit_code == 2 and "no encoder-self attention" in result.output

"""The Python API (`s2s.load`): the same answers as the CLI, JSON-able, mistakes named."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import s2s
from s2s.api import InputError, narrow
from s2s.cli import cli

SENTENCES = ["Saturday, 4 July 1998", "le 1er juillet 2003", "7/4/98"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("code", [
    "import s2s",
    "import s2s.cli, sys; sys.argv = ['s2s', '--help']\ntry: s2s.cli.main()\nexcept SystemExit: pass",
    "import s2s.cli, sys; sys.argv = ['s2s', 'serve', '--help']\ntry: s2s.cli.main()\nexcept SystemExit: pass",
])
def test_import_and_help_do_not_import_torch(code):
    check = f"{code}\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_translating_does_not_import_datasets(trained_run):
    """`datasets` takes about a second to import; translating never reads a corpus."""
    code = ("import s2s.cli, sys\n"
            f"sys.argv = ['s2s', 'translate', {str(trained_run)!r}, '4 July 1998', '--device', 'cpu']\n"
            "try: s2s.cli.main()\nexcept SystemExit as e: assert not e.code, e.code\n"
            "assert 'datasets' not in sys.modules, 'datasets was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr


def test_load_is_the_api_model(trained_run):
    model = s2s.load(trained_run, device="cpu")
    assert isinstance(model, s2s.Model) and model.name == "tiny" and model.task == "translation"
    json.dumps(model.info())  # JSON-able


def test_translate_gives_what_the_cli_prints(trained_run):
    model = s2s.load(trained_run, device="cpu")
    results = model.translate(SENTENCES, beam=3, n_best=2, align=True)
    printed = invoke("translate", trained_run, *SENTENCES, "--beam", 3, "--n-best", 2, "--align",
                     "--device", "cpu").splitlines()
    expected = [f"{h['text']} ||| {h['alignment']}\t{h['score']:.4f}"
                for r in results for h in r["hypotheses"]]
    assert printed == expected
    assert [r["source"] for r in results] == SENTENCES
    json.dumps(results)
    one = model.translate(SENTENCES[0])  # a single string is a list of one
    assert one[0]["hypotheses"][0]["text"] == invoke("translate", trained_run, SENTENCES[0],
                                                     "--device", "cpu").strip()


@pytest.mark.parametrize("words", [False, True])
def test_attention_is_the_inspect_json(transformer_run, tmp_path, words):
    out = tmp_path / "x.json"
    invoke("inspect", transformer_run, SENTENCES[0], "-o", out, "--device", "cpu",
           *(["--words"] if words else []))
    written = json.loads(out.read_text())
    record = s2s.load(transformer_run, device="cpu").attention(SENTENCES[0], words=words)
    assert record.keys() == written.keys()
    assert {k: v for k, v in record.items() if k != "weights"} == \
        {k: v for k, v in written.items() if k != "weights"}
    np.testing.assert_allclose(record["weights"], written["weights"], rtol=1e-5, atol=1e-7)
    json.dumps(record)


def test_attention_of_a_forced_target_and_a_chosen_layer_and_head(transformer_run):
    model = s2s.load(transformer_run, device="cpu")
    full = model.attention(SENTENCES[0], target="1998-07-04")
    assert full["extra"]["target"] == "1998-07-04" and full["shape"][:2] == [2, 2]
    weights = np.array(full["weights"])
    one = model.attention(SENTENCES[0], target="1998-07-04", layer=1, head=0)
    assert one["shape"] == [1, 1, *full["shape"][2:]]
    np.testing.assert_allclose(np.array(one["weights"])[0, 0], weights[1, 0], rtol=1e-6)
    assert one["extra"]["layer"] == 1 and one["extra"]["head"] == 0
    mean = model.attention(SENTENCES[0], target="1998-07-04", layer="all", head="mean")
    np.testing.assert_allclose(np.array(mean["weights"])[:, 0], weights.mean(1), rtol=1e-5)
    cross = model.attention(SENTENCES[0], target="1998-07-04", kind="cross")
    assert cross == {k: v for k, v in full.items() if k not in ("encoder_self", "decoder_self")}
    assert {"encoder_self", "decoder_self"} <= full.keys()  # a Transformer has every kind
    decoder = model.attention(SENTENCES[0], target="1998-07-04", kind="decoder-self", layer=0, head=1)
    assert "weights" not in decoder and "encoder_self" not in decoder
    rows = len(full["decoder_self"]["rows"])
    assert decoder["decoder_self"]["shape"] == [1, 1, rows, rows]
    np.testing.assert_allclose(np.array(decoder["decoder_self"]["weights"])[0, 0],
                               np.array(full["decoder_self"]["weights"])[0, 1], rtol=1e-6)


def test_the_kinds_a_record_holds_are_kept_or_chosen():
    w = np.random.default_rng(0).random((2, 3, 4, 5)).round(3)
    record = {"src_tokens": list("abcde"), "tgt_tokens": list("wxyz"), "shape": [2, 3, 4, 5],
              "dtype": "float32", "weights": w.tolist(),
              "encoder_self": {"rows": list("abcde"), "columns": list("abcde"), "shape": [2, 3, 5, 5],
                               "weights": np.ones((2, 3, 5, 5)).tolist()},
              "extra": {"words": False}}
    assert narrow(record, None, None, None) == record
    encoder = narrow(record, "encoder-self", 0, "mean")
    assert "weights" not in encoder and "decoder_self" not in encoder
    assert encoder["encoder_self"]["shape"] == [1, 1, 5, 5]
    assert encoder["encoder_self"]["rows"] == list("abcde")  # the kind's tokens stay
    cross = narrow(record, "cross", -1, 2)
    assert "encoder_self" not in cross and cross["shape"] == [1, 1, 4, 5]
    np.testing.assert_allclose(np.array(cross["weights"])[0, 0], w[1, 2], rtol=1e-6)
    with pytest.raises(InputError, match="no decoder-self attention; it has cross, encoder-self"):
        narrow(record, "decoder-self", None, None)


@pytest.mark.parametrize("call, field", [
    (lambda m: m.translate([""]), "text[0]"),
    (lambda m: m.translate(["ok", "x " * 2000]), "text[1]"),
    (lambda m: m.translate([]), "text"),
    (lambda m: m.translate(["ok"], beam=0), "beam"),
    (lambda m: m.attention("  "), "text"),
    (lambda m: m.attention("ok", kind="self"), "kind"),
    (lambda m: m.attention("ok", layer=3), "layer"),
    (lambda m: m.attention("ok", head="max"), "head"),
    (lambda m: m.caption(["x.png"]), "model"),
])
def test_mistakes_name_the_argument(trained_run, call, field):
    model = s2s.load(trained_run, device="cpu")
    with pytest.raises(InputError) as caught:
        call(model)
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")


def test_caption_files_and_pictures_alike(captioning_run, tmp_path):
    from s2s.data.shapes import generate

    picture = next(iter(generate("test", 1, seed=3)))["image"]
    picture.save(tmp_path / "a.png")
    model = s2s.load(captioning_run, device="cpu")
    from_file, from_picture = model.caption([tmp_path / "a.png", picture], n_best=2, attention=True)
    assert from_file == from_picture
    printed = invoke("caption", captioning_run, tmp_path / "a.png", "--n-best", 2, "--device", "cpu")
    assert printed.splitlines() == [f"{h['text']}\t{h['score']:.4f}" for h in from_file["hypotheses"]]
    attention = from_file["hypotheses"][0]["attention"]
    h, w = attention["grid"]
    weights = np.array(attention["weights"])
    assert weights.shape == (1, 1, len(attention["tokens"]), h * w) == tuple(attention["shape"])
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(InputError, match="model: tiny-shapes is a captioning model"):
        model.translate(["x"])

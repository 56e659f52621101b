"""Models that travel: Marian (Hugging Face) models imported into s2s decode exactly as
`transformers` decodes them, and s2s runs exported to Hugging Face and CTranslate2 decode exactly
as s2s does.

The search correspondence: s2s's beam search stops a sentence once it has `beam` finished
hypotheses and scores them by sum of log-probabilities / length ** length_penalty (the end token
counted): `generate(num_beams=K, early_stopping=True, length_penalty=...)`. s2s never outputs
padding or the start token (`bad_words_ids`, as opus-mt's generation config has). At the length
budget s2s keeps only the end token, with its own probability: `AtBudgetOnlyEnd` below (HF's
`forced_eos_token_id` would score that step 0).
"""

import json
import pickle

import pytest
import torch

pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402
from transformers import LogitsProcessor, LogitsProcessorList, MarianMTModel, MarianTokenizer  # noqa: E402

from s2s.cli import cli  # noqa: E402
from s2s.export.huggingface import export_huggingface  # noqa: E402
from s2s.export.marian_import import import_marian  # noqa: E402
from s2s.run import Run  # noqa: E402
from s2s.translate import DecodeOptions, translate  # noqa: E402
from s2s.vocab import BOS, EOS, PAD  # noqa: E402

from marian_fixtures import make_marian, make_run, sentences  # noqa: E402

BUDGET = 12  # output tokens, the end token included; below every a * source length + b here
TEXTS = sentences(8, seed=5) + ["the cat"]


class AtBudgetOnlyEnd(LogitsProcessor):
    """At the last allowed step only the end token remains, keeping its score (as s2s does)."""

    def __init__(self, max_length: int, eos: int):
        self.max_length, self.eos = max_length, eos

    def __call__(self, input_ids, scores):
        if input_ids.size(1) == self.max_length - 1:
            kept = scores[:, self.eos].clone()
            scores = torch.full_like(scores, float("-inf"))
            scores[:, self.eos] = kept
        return scores


def hf_generate(model, input_ids, beam, eos, never, length_penalty=1.0):
    mask = torch.ones_like(input_ids)
    out = model.generate(input_ids=input_ids, attention_mask=mask, num_beams=beam, do_sample=False,
                         early_stopping=True, length_penalty=length_penalty,
                         max_new_tokens=BUDGET, forced_eos_token_id=None, bad_words_ids=never,
                         logits_processor=LogitsProcessorList([AtBudgetOnlyEnd(BUDGET + 1, eos)]),
                         output_scores=True, return_dict_in_generate=True)
    tokens = out.sequences[0, 1:].tolist()
    tokens = tokens[:tokens.index(eos)] if eos in tokens else tokens
    return tokens, (out.sequences_scores[0].item() if beam > 1 else None)


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    return make_marian(tmp_path_factory.mktemp("hf") / "opus-mt-xx-yy")


@pytest.fixture(scope="module")
def imported(marian, tmp_path_factory):
    return import_marian(marian, tmp_path_factory.mktemp("runs") / "imported")


def marian_ids(run, hf_dir, separate=False):
    """s2s id -> Marian id, per side, from the two vocabularies (the start row has none)."""
    theirs = [json.loads((hf_dir / "vocab.json").read_text())]
    theirs.append(json.loads((hf_dir / "target_vocab.json").read_text()) if separate else theirs[0])
    ours = [run.tokenizer.src_vocab, run.tokenizer.tgt_vocab]
    return [{i: their[p] for p, i in our.items() if p in their} for our, their in zip(ours, theirs)]


@pytest.mark.parametrize("separate", [False, True], ids=["joint", "separate"])
def test_imported_marian_decodes_as_transformers_does(separate, tmp_path):
    hf_dir = make_marian(tmp_path / "hf", separate=separate) if separate else None
    if hf_dir is None:
        hf_dir = make_marian(tmp_path / "hf")
    run = Run.open(import_marian(hf_dir, tmp_path / "run"), device="cpu", precision="fp32")
    hf = MarianMTModel.from_pretrained(str(hf_dir)).eval()
    tok = MarianTokenizer.from_pretrained(str(hf_dir))
    src_map, tgt_map = marian_ids(run, hf_dir, separate)
    back = {m: i for i, m in tgt_map.items()}
    eos, pad = hf.config.eos_token_id, hf.config.pad_token_id
    for text in TEXTS:
        ids = run.tokenizer.encode_src([text])[0]
        assert [src_map[i] for i in ids] == tok(text)["input_ids"]  # pieces, numbering, "</s>"
        source = torch.tensor([tok(text)["input_ids"]])
        for beam in (1, 3):
            ours = translate(run, [text], DecodeOptions(beam=beam, max_len=BUDGET))[0][0]
            tokens, score = hf_generate(hf, source, beam, eos, [[pad]])
            assert [tgt_map[i] for i in ours.tokens] == tokens, (text, beam)
            assert ours.text == tok.decode(tokens, skip_special_tokens=True)
            if score is not None:
                assert ours.score == pytest.approx(score, abs=1e-4)
        # log-probabilities of every vocabulary entry at every position of the output
        target = [pad] + tokens + [eos]
        with torch.no_grad():
            theirs = hf(input_ids=source, decoder_input_ids=torch.tensor([target[:-1]])).logits
            mine = run.model(torch.tensor([ids]), torch.tensor([ids]) != PAD,
                             torch.tensor([[BOS] + [back[t] for t in target[1:-1]]]))[0]
        theirs, mine = theirs.log_softmax(-1)[0], mine.log_softmax(-1)[0]
        columns = sorted(i for i in tgt_map if i != BOS)
        assert torch.allclose(mine[:, columns], theirs[:, [tgt_map[i] for i in columns]], atol=1e-4)
        assert mine[:, BOS].exp().max() == 0.0  # the added start row takes no probability


def test_exported_run_loads_in_transformers_and_translates_alike(tmp_path):
    run = Run.open(make_run(tmp_path / "run", norm="post", activation="gelu"), device="cpu",
                   precision="fp32")
    out = export_huggingface(run, tmp_path / "hf")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "source.spm", "target.spm", "vocab.json",
            "tokenizer_config.json", "generation_config.json"} <= names
    hf = MarianMTModel.from_pretrained(str(out)).eval()
    tok = MarianTokenizer.from_pretrained(str(out))
    for text in TEXTS:
        ours = translate(run, [text], DecodeOptions(beam=1, max_len=BUDGET))[0][0]
        ids = tok(text, add_special_tokens=False)["input_ids"]  # s2s sources have no "</s>"
        assert ids == run.tokenizer.encode_src([text])[0]
        tokens, _ = hf_generate(hf, torch.tensor([ids]), 1, EOS, [[PAD], [BOS]])
        assert tokens == ours.tokens, text
        assert tok.decode(tokens, skip_special_tokens=True) == ours.text


def test_marian_round_trip_keeps_the_model(imported, tmp_path):
    run = Run.open(imported, device="cpu", precision="fp32")
    export_huggingface(run, tmp_path / "hf")
    again = Run.open(import_marian(tmp_path / "hf", tmp_path / "again"), device="cpu", precision="fp32")
    assert again.tokenizer.src_vocab == run.tokenizer.src_vocab
    for beam in (1, 3):
        first = translate(run, TEXTS, DecodeOptions(beam=beam, max_len=BUDGET))
        second = translate(again, TEXTS, DecodeOptions(beam=beam, max_len=BUDGET))
        assert [r[0].tokens for r in first] == [r[0].tokens for r in second]


def test_exports_refuse_runs_they_cannot_express(tmp_path):
    run = make_run(tmp_path / "pre", norm="pre")
    result = CliRunner().invoke(cli, ["export", str(run), "--to", "huggingface", str(tmp_path / "hf")])
    assert result.exit_code == 2
    assert "model.norm is pre: Marian is post-norm" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "hf").exists()


def test_imported_run_has_attention_to_inspect_and_align(imported, tmp_path):
    runner = CliRunner()
    text = TEXTS[0]
    for kind in ("cross", "encoder-self", "decoder-self"):
        result = runner.invoke(cli, ["inspect", str(imported), text, "--kind", kind, "--layer", "all",
                                     "--head", "all", "--no-color"])
        assert result.exit_code == 0, result.output
        assert "panel 4 of 4" in result.output  # 2 layers x 2 heads
    result = runner.invoke(cli, ["translate", str(imported), text, "--align"])
    assert result.exit_code == 0 and " ||| " in result.output
    pairs, gold = tmp_path / "pairs.tsv", tmp_path / "gold.txt"
    pairs.write_text("".join(f"{t}\t{t}\n" for t in TEXTS[:3]))
    gold.write_text("".join(" ".join(f"{i}-{i}" for i in range(len(t.split()))) + "\n"
                            for t in TEXTS[:3]))
    result = runner.invoke(cli, ["evaluate", str(imported), "--alignments", str(gold),
                                 "--data", str(pairs), "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["per_layer_head"]) == 2 * (2 + 1)  # heads + mean
    src, ref = tmp_path / "test.src", tmp_path / "test.ref"
    src.write_text("".join(t + "\n" for t in TEXTS))
    ref.write_text("".join(t + "\n" for t in TEXTS))
    result = runner.invoke(cli, ["evaluate", str(imported), "--src", str(src), "--ref", str(ref),
                                 "--json", "--beam", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sentences"] == len(TEXTS)


def test_import_mistakes_are_one_line_and_write_nothing(marian, tmp_path):
    import shutil

    runner = CliRunner()

    def fails(folder, message):
        out = tmp_path / f"run-{folder.name}"
        result = runner.invoke(cli, ["import", "huggingface", str(folder), str(out)])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
        assert not out.exists()

    fails(tmp_path, "not a Hugging Face model directory (no config.json)")
    bart = tmp_path / "bart"
    shutil.copytree(marian, bart)
    config = json.loads((bart / "config.json").read_text())
    (bart / "config.json").write_text(json.dumps({**config, "model_type": "bart"}))
    fails(bart, "model_type is 'bart', not 'marian'")

    short = tmp_path / "short"
    shutil.copytree(marian, short)
    vocab = json.loads((short / "vocab.json").read_text())
    vocab.pop(max(vocab, key=vocab.get))
    (short / "vocab.json").write_text(json.dumps(vocab))
    fails(short, "the vocabulary does not match the weights")

    class Payload:
        def __reduce__(self):
            return (print, ("payload ran",))

    pickled = tmp_path / "pickled"
    shutil.copytree(marian, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps({"model.shared.weight": Payload()}))
    fails(pickled, "refusing to unpickle it")
    result = runner.invoke(cli, ["import", "huggingface", str(pickled), str(tmp_path / "again")])
    assert "payload ran" not in result.output


def test_missing_extra_is_one_line(trained_run, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ctranslate2" else real(name, *a))
    result = CliRunner().invoke(cli, ["export", str(trained_run), "--to", "ctranslate2",
                                      str(tmp_path / "ct2")])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: this needs the ctranslate2 package: "
                                     "pip install 's2s[ctranslate2]'")


VARIANTS = {"pre": dict(norm="pre"), "post": dict(norm="post"),
            "other-choices": dict(norm="post", activation="gelu", positions="learned",
                                  share_embeddings=False, tie_output=False, scale_embeddings=False,
                                  output_bias=True),
            "swish": dict(norm="pre", activation="swish", tie_output=False)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_ctranslate2_export_decodes_as_s2s_does(variant, tmp_path):
    pytest.importorskip("ctranslate2")
    from s2s.export.ctranslate2 import export_ctranslate2, open_export

    run = Run.open(make_run(tmp_path / "run", **VARIANTS[variant]), device="cpu", precision="fp32")
    out = export_ctranslate2(run, tmp_path / "ct2")
    engine = open_export(out)
    texts = sentences(20, seed=3)
    ours = translate(run, texts, DecodeOptions(beam=1))
    theirs = translate(engine, texts, DecodeOptions(beam=1))
    assert [a[0].tokens for a in ours] == [b[0].tokens for b in theirs]
    n_best = translate(engine, texts, DecodeOptions(beam=3, n_best=2))  # the budgets make the
    assert all(len(r) == 2 for r in n_best)  # random model's beams differ; the real one: bench/
    result = CliRunner().invoke(cli, ["translate", str(out), texts[0], "--beam", "1"])
    assert result.exit_code == 0, result.output
    greedy = translate(run, texts[:1], DecodeOptions(beam=1))[0][0].text
    assert result.output.rstrip("\n") == greedy
    result = CliRunner().invoke(cli, ["translate", str(tmp_path / "run"), texts[0], "--beam", "1",
                                      "--engine", "ctranslate2"])
    assert result.exit_code == 0 and result.output.rstrip("\n") == greedy


def test_ctranslate2_export_leaves_the_run_untouched(tmp_path):
    pytest.importorskip("ctranslate2")
    from s2s.export.ctranslate2 import export_ctranslate2

    run = Run.open(make_run(tmp_path / "run"), device="cpu", precision="fp32")
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    for quantization in ("int8", "int8_float32", "float32"):
        export_ctranslate2(run, tmp_path / quantization, quantization)
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())


def test_ctranslate2_refuses_rnn_runs(trained_run, tmp_path):
    pytest.importorskip("ctranslate2")
    result = CliRunner().invoke(cli, ["export", str(trained_run), "--to", "ctranslate2",
                                      str(tmp_path / "ct2")])
    assert result.exit_code == 2
    assert "CTranslate2 has no RNN decoder" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "ct2").exists()

"""Data: local formats, nested columns, clear errors, token batches, the tokeniser cache."""

import json

import datasets
import numpy as np
import pytest

from s2s.data.batching import token_batches
from s2s.data.corpus import load_split, text_pairs
from s2s.errors import UserError
from s2s.recipe import DataConfig


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


ROWS = [{"de": f"ein Hund {i}", "en": f"a dog {i}"} for i in range(20)]


@pytest.fixture
def jsonl_folder(tmp_path):
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / f"{split}.jsonl", ROWS)
    return tmp_path


def test_folder_of_jsonl_files(jsonl_folder):
    cfg = DataConfig(path=str(jsonl_folder), src="de", tgt="en")
    pairs = text_pairs(load_split(cfg, "validation"), cfg)
    assert pairs.column_names == ["src", "tgt"]
    assert pairs[3] == {"src": "ein Hund 3", "tgt": "a dog 3"}


def test_csv_parquet_and_save_to_disk(tmp_path):
    ds = datasets.Dataset.from_list(ROWS)
    (tmp_path / "csv").mkdir()
    ds.to_csv(tmp_path / "csv" / "train.csv")
    (tmp_path / "pq").mkdir()
    ds.to_parquet(tmp_path / "pq" / "train.parquet")
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved"))
    for folder in ("csv", "pq", "saved"):
        cfg = DataConfig(path=str(tmp_path / folder), src="de", tgt="en")
        assert text_pairs(load_split(cfg, "train"), cfg)["tgt"][:2] == ["a dog 0", "a dog 1"]


def test_nested_translation_columns(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"translation": r} for r in ROWS])
    cfg = DataConfig(path=str(tmp_path), src="translation.de", tgt="translation.en")
    assert text_pairs(load_split(cfg, "train"), cfg)[0] == {"src": "ein Hund 0", "tgt": "a dog 0"}


def test_generator_keeps_gold_spans():
    cfg = DataConfig(dataset="dates")
    pairs = text_pairs(load_split(DataConfig(dataset="dates", sizes=cfg.sizes.__class__(
        train=0, validation=5, test=5)), "test"), cfg)
    row = pairs[0]
    start, end = row["year_span"]
    assert row["src"][start:end][-2:] == row["tgt"][2:4]


@pytest.mark.parametrize("cfg, split, message", [
    (DataConfig(path="/no/such/folder"), "train", "data path not found: /no/such/folder"),
    (DataConfig(), "train", "names no data"),
    (DataConfig(dataset="no-such-owner/no-such-dataset"), "train", "cannot load"),
])
def test_bad_sources_are_user_errors(cfg, split, message):
    with pytest.raises(UserError, match=message):
        load_split(cfg, split)


def test_missing_split_column_and_empty_split(jsonl_folder):
    (jsonl_folder / "test.jsonl").unlink()
    with pytest.raises(UserError, match="no split 'test'"):
        load_split(DataConfig(path=str(jsonl_folder)), "test")
    cfg = DataConfig(path=str(jsonl_folder), src="fr", tgt="en")
    with pytest.raises(UserError, match="column 'fr' not found"):
        text_pairs(load_split(cfg, "train"), cfg)
    (jsonl_folder / "validation.jsonl").write_text("")
    with pytest.raises(UserError, match="validation"):
        load_split(DataConfig(path=str(jsonl_folder)), "validation")


def test_token_batches_respect_the_budget_and_cover_every_row():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 40, 500), rng.integers(1, 40, 500)
    rows = np.arange(500)
    batches = token_batches(src, tgt, rows, batch_tokens=400, rng=np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == rows.tolist()
    for b in batches:
        assert len(b) == 1 or len(b) * max(src[b].max(), tgt[b].max() + 1) <= 400
    again = token_batches(src, tgt, rows, batch_tokens=400, rng=np.random.default_rng(1))
    assert all((a == b).all() for a, b in zip(batches, again))  # same seed, same order
    padding = sum(len(b) * tgt[b].max() - tgt[b].sum() for b in batches) / tgt.sum()
    assert padding < 0.1  # length bucketing keeps padding low


def test_unbucketed_batches_sample_every_length():
    """For BatchNorm image encoders: each batch mixes lengths like the data does."""
    tgt = np.repeat([4, 9, 14], 300)  # e.g. shapes captions of one, two and three objects
    src, rows = np.zeros_like(tgt), np.arange(len(tgt))
    batches = token_batches(src, tgt, rows, batch_tokens=600, rng=np.random.default_rng(0),
                            by_length=False)
    assert sorted(np.concatenate(batches).tolist()) == rows.tolist()
    assert all(len(b) * (tgt[b].max() + 1) <= 600 for b in batches)
    mixed = [len(np.unique(tgt[b])) == 3 for b in batches if len(b) >= 20]
    assert mixed and all(mixed)
    bucketed = token_batches(src, tgt, rows, batch_tokens=600, rng=np.random.default_rng(0))
    assert sum(len(np.unique(tgt[b])) > 1 for b in bucketed) <= 2  # only at the two boundaries


def test_pairs_without_a_source_or_target_are_dropped_and_counted(tmp_path):
    """A JSON null, a missing key or an empty CSV field: left out of every split, and the
    trainer says how many it left out."""
    import csv

    from s2s.recipe import recipe_from_dict
    from s2s.run import Run
    from s2s.tasks import task_of
    from s2s.train import train
    from s2s.translate import DecodeOptions
    from conftest import TINY

    rows = [{"de": f"{i} Hunde", "en": f"{i} dogs"} for i in range(1, 40)]
    holes = rows + [{"de": None, "en": "no source"}, {"en": "no source key"},
                    {"de": "kein Ziel", "en": None}]
    write_jsonl(tmp_path / "train.jsonl", holes)
    write_jsonl(tmp_path / "test.jsonl", holes)
    with open(tmp_path / "validation.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["de", "en"])
        writer.writeheader()
        writer.writerows(rows[:10] + [{"de": "", "en": "empty source field"}])
    recipe = recipe_from_dict({**TINY, "name": "holes", "data": {"path": str(tmp_path),
                                                                  "src": "de", "tgt": "en"},
                               "train": {**TINY["train"], "max_steps": 2, "eval_every": 2}})
    log = []
    train(recipe, tmp_path / "run", device="cpu", log=log.append)
    line = next(x for x in log if x.startswith("data "))
    assert "39 training examples (3 dropped: no source or target)" in line, line
    assert "10 validation examples (1 dropped: no source or target)" in line, line
    run = Run.open(tmp_path / "run", device="cpu")
    report, hyps = task_of(run.recipe).evaluate(run, "test", DecodeOptions(beam=1))
    assert report["sentences"] == len(hyps) == 39


TSV_ROWS = [('ein "Hund", 1', 'a "dog", 1'), ("NA", "null"), ("1998", "1998"), ("", "empty source")]


@pytest.mark.parametrize("header", [True, False])
def test_tsv_is_tab_separated_with_or_without_a_header(tmp_path, header):
    """Commas and quotes are text in a TSV file; so are 'NA' and numbers."""
    lines = ["de\ten"] if header else []
    lines += [f"{s}\t{t}" for s, t in TSV_ROWS]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = DataConfig(path=str(tmp_path), src="de", tgt="en")
    pairs = text_pairs(load_split(cfg, "train"), cfg)
    assert list(zip(pairs["src"], pairs["tgt"])) == TSV_ROWS


def test_a_headerless_tsv_needs_two_columns(tmp_path):
    (tmp_path / "train.tsv").write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"train\.tsv.*3 tab-separated fields"):
        load_split(DataConfig(path=str(tmp_path), src="de", tgt="en"), "train")


def test_parallel_text_files(tmp_path):
    for split in ("train", "validation"):
        (tmp_path / f"{split}.de").write_text("ein Hund\n\n\"zwei\", Hunde\n", encoding="utf-8")
        (tmp_path / f"{split}.en").write_text("a dog\nempty source\n\"two\", dogs\n", encoding="utf-8")
    cfg = DataConfig(path=str(tmp_path), src="de", tgt="en")
    pairs = text_pairs(load_split(cfg, "validation"), cfg)
    assert list(zip(pairs["src"], pairs["tgt"])) == [
        ("ein Hund", "a dog"), ("", "empty source"), ('"zwei", Hunde', '"two", dogs')]
    (tmp_path / "train.en").write_text("a dog\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"train\.de has 3 lines but .*train\.en has 1"):
        load_split(cfg, "train")
    (tmp_path / "train.en").unlink()
    with pytest.raises(UserError, match=r"train\.en"):
        load_split(cfg, "train")


def spm_model(path, texts, **ids):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=str(path),
                                   model_type="char", vocab_size=40, hard_vocab_limit=False,
                                   minloglevel=2, **ids)
    return path.with_suffix(".model")


S2S_IDS = dict(pad_id=0, unk_id=1, bos_id=2, eos_id=3)


def test_an_existing_sentencepiece_model_is_reused(tmp_path):
    from conftest import TINY

    from s2s.recipe import recipe_from_dict
    from s2s.train import Trainer

    texts = ["4 July 1998", "1998-07-04", "le 1er juillet 2003", "12/25/99"] * 20
    mine = spm_model(tmp_path / "mine", texts, **S2S_IDS)
    recipe = lambda tok: recipe_from_dict({  # noqa: E731
        **TINY, "name": "t", "tokenizer": tok,
        "model": {**TINY["model"], "share_embeddings": tok.get("joint", True)}})
    log = []
    Trainer(recipe({"model": str(mine)}), tmp_path / "joint", device="cpu", log=log.append)
    assert (tmp_path / "joint" / "tokenizer" / "joint.model").read_bytes() == mine.read_bytes()
    assert not any("training" in line and "tokenizer" in line for line in log), log

    other = spm_model(tmp_path / "other", texts[:40], **S2S_IDS)
    trainer = Trainer(recipe({"model": str(mine), "tgt_model": str(other), "joint": False}),
                      tmp_path / "separate", device="cpu", log=log.append)
    folder = tmp_path / "separate" / "tokenizer"
    assert (folder / "src.model").read_bytes() == mine.read_bytes()
    assert (folder / "tgt.model").read_bytes() == other.read_bytes()
    assert not trainer.tokenizer.joint

    default_ids = spm_model(tmp_path / "default", texts)  # unk=0, bos=1, eos=2, no pad
    with pytest.raises(UserError, match=r"default\.model.*--pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3"):
        Trainer(recipe({"model": str(default_ids)}), tmp_path / "bad", device="cpu")
    with pytest.raises(UserError, match="missing.model"):
        Trainer(recipe({"model": str(tmp_path / "missing.model")}), tmp_path / "gone", device="cpu")
    with pytest.raises(UserError, match="tokenizer.tgt_model"):  # when the recipe is loaded
        recipe({"model": str(mine), "joint": False})

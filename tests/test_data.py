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

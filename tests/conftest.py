"""Shared fixtures: no network, caches in a temp dir, and one tiny trained run for CLI tests."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

torch.set_num_threads(int(os.environ.get("S2S_TEST_THREADS", "2")))  # 1 on a shared machine

TINY = {
    "description": "tiny dates model for tests",
    "data": {"dataset": "dates", "sizes": {"train": 3000, "validation": 100, "test": 100}},
    "tokenizer": {"type": "char", "vocab_size": 100},
    "model": {"arch": "rnn", "emb_dim": 32, "hidden_dim": 64, "dropout": 0.1,
              "share_embeddings": True, "attention": {"type": "additive"}},
    "train": {"batch_tokens": 1500, "lr": 0.005, "schedule": "constant", "max_steps": 40,
              "precision": "fp32",  # the same numbers on AMX machines (auto: bf16) and others
              "eval_every": 20, "log_every": 10, "eval_metric": "exact", "label_smoothing": 0.0},
    "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 14, "batch_size": 16},
}


@pytest.fixture(autouse=True, scope="session")
def isolated_hf_cache(tmp_path_factory):
    """Keep `datasets` caches out of the user's home directory."""
    home = tmp_path_factory.mktemp("hf_home")
    old = {k: os.environ.get(k) for k in ("HF_HOME", "HF_DATASETS_CACHE")}
    os.environ["HF_HOME"] = str(home)
    os.environ["HF_DATASETS_CACHE"] = str(home / "datasets")
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def step_through(model, src, mask, tgt):
    """Decode `tgt` one incremental step at a time: (B, T, V) logits, each step's weights, and
    the final decoding state."""
    state, steps, weights = model.encode(src, mask), [], []
    for t in range(tgt.size(1)):
        out, state, w = model.step(state, tgt[:, t])
        steps.append(out)
        weights.append(w)
    return torch.stack(steps, 1), weights, state


def write_recipe(path, recipe: dict):
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


@pytest.fixture
def tiny_recipe(tmp_path):
    """A path to a small, fast recipe (dates corpus, tiny GRU)."""
    return write_recipe(tmp_path / "tiny.yaml", TINY)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run directory trained once (about ten seconds) and shared by read-only tests."""
    from s2s.recipe import recipe_from_dict
    from s2s.train import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    recipe = recipe_from_dict({"name": "tiny", **TINY,
                               "train": {**TINY["train"], "max_steps": 120, "eval_every": 60}})
    train(recipe, run_dir, device="cpu", log=lambda *a: None)
    return run_dir


@pytest.fixture(scope="session")
def transformer_run(tmp_path_factory):
    """A tiny Transformer on the dates corpus: 2 layers x 2 heads, trained for a few seconds."""
    from s2s.recipe import recipe_from_dict
    from s2s.train import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny-transformer"
    model = {"arch": "transformer", "d_model": 32, "heads": 2, "ffn_dim": 64, "enc_layers": 2,
             "dec_layers": 2, "dropout": 0.0}
    recipe = recipe_from_dict({"name": "tiny-transformer", **TINY, "model": model,
                               "train": {**TINY["train"], "max_steps": 30, "eval_every": 30}})
    train(recipe, run_dir, device="cpu", log=lambda *a: None)
    return run_dir


@pytest.fixture(scope="session")
def captioning_run(tmp_path_factory):
    """A tiny captioning run (shapes), trained for one step: enough to caption and attend."""
    from serving import train_captioner

    return train_captioner(tmp_path_factory.mktemp("captioner"))

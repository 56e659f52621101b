"""Recipes: every shipped one loads and builds; overrides and mistakes behave."""

import pytest

from s2s.errors import UserError
from s2s.models import build_model
from s2s.recipe import load_recipe, recipe_to_dict, recipe_from_dict
from s2s.recipe_files import packaged_recipes


@pytest.mark.parametrize("name", sorted(packaged_recipes()))
def test_every_recipe_loads_and_builds(name):
    recipe = load_recipe(name)
    assert recipe.name == name and recipe.description
    model = build_model(recipe.model, 100, 100)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert recipe_from_dict(recipe_to_dict(recipe)) == recipe  # survives the run directory


def test_overrides_reach_nested_keys_and_convert_types():
    r = load_recipe("dates-rnn-bahdanau", ["model.attention.type=dot", "train.lr=1e-4",
                                          "train.max_steps=7", "data.path=/some/where"])
    assert r.model.attention.type == "dot"
    assert r.train.lr == pytest.approx(1e-4) and isinstance(r.train.lr, float)
    assert r.train.max_steps == 7
    assert r.data.path == "/some/where"


@pytest.mark.parametrize("override, message", [
    ("model.atention.type=dot", 'unknown recipe key \'model.atention\' \\(did you mean "attention"\\?\\)'),
    ("train.lr=fast", "'train.lr' needs a float"),
    ("train.max_steps=1.5", "'train.max_steps' needs a int"),
    ("train.betas=[0.9]", "'train.betas' needs a list of 2 values"),
    ("model.arch=lstm", "unknown model.arch 'lstm'"),
    ("model.cell=lstn", 'must be one of gru, lstm; not \'lstn\' \\(did you mean "lstm"\\?\\)'),
    ("model.attention.type=locl_p", 'unknown model.attention.type \'locl_p\' \\(did you mean "local_p"\\?\\)'),
    ("model.hidden_dim=-2", "'model.hidden_dim' must be at least 1, got -2"),
    ("model.dropout=1", "'model.dropout' must be less than 1"),
    ("tokenizer.vocab_size=0", "'tokenizer.vocab_size' must be at least 8, got 0"),
    ("tokenizer.type=sentencepiece", "'tokenizer.type' must be one of unigram, bpe, char, word"),
    ("train.lr=0", "'train.lr' must be greater than 0"),
    ("train.batch_tokens=0", "'train.batch_tokens' must be at least 1"),
    ("train.schedule=cosine", "'train.schedule' must be one of constant, inverse_sqrt, plateau"),
    ("train.precision=fp16", "'train.precision' must be one of auto, fp32, bf16"),
    ("train.eval_metric=ter", "'train.eval_metric' must be one of"),
    ("decode.beam=0", "'decode.beam' must be at least 1"),
    ("model.hidden_dim=63", "must be even for a bidirectional encoder"),
    ("nonsense", "must look like key.path=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UserError, match=message):
        load_recipe("dates-rnn-bahdanau", [override])


def test_unknown_recipe_suggests_the_closest():
    with pytest.raises(UserError, match='did you mean "dates-rnn-luong"'):
        load_recipe("dates-rnn-loung")


def test_recipe_file_by_path(tiny_recipe):
    assert load_recipe(str(tiny_recipe)).name == "tiny"
    with pytest.raises(UserError, match="not found"):
        load_recipe(str(tiny_recipe.with_name("missing.yaml")))


def test_a_bad_value_is_refused_before_anything_is_written(tiny_recipe, tmp_path):
    from click.testing import CliRunner

    from s2s.cli import cli

    run_dir = tmp_path / "never"
    result = CliRunner().invoke(cli, ["train", str(tiny_recipe), "--run-dir", str(run_dir),
                                      "--set", "model.cell=lstn"])
    assert result.exit_code == 2 and "model.cell" in result.output
    assert "Traceback" not in result.output and not run_dir.exists()


def test_new_mechanism_settings_are_typed_like_every_other_key():
    r = load_recipe("dates-rnn-bahdanau", ["model.attention={type: local_p, window: 3}"])
    assert r.model.attention.type == "local_p" and r.model.attention.window == 3
    with pytest.raises(UserError, match="'model.attention.window' must be at least 1"):
        load_recipe("dates-rnn-bahdanau", ["model.attention={type: local_p, window: 0}"])
    with pytest.raises(UserError, match="unknown recipe key 'model.attention.window'"):
        load_recipe("dates-rnn-bahdanau", ["model.attention={type: additive, window: 3}"])


@pytest.mark.parametrize("text, line, column", [
    ("data:\n  dataset: dates\n  sizes: {train: 10\nmodel:\n  arch: rnn\n", 4, 6),
    ("data:\n  dataset: dates\n model: x\n", 3, 2),
    ("train:\n  lr: [0.1\n", 3, 1),
])
def test_yaml_syntax_errors_name_the_file_line_and_column(tmp_path, text, line, column):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        load_recipe(str(path))
    message = str(error.value)
    assert f"{path}, line {line}, column {column}:" in message and "\n" not in message, message


def test_every_shipped_recipe_stops_at_a_step_count():
    """Wall-clock limits give a different model on a slower or busier machine."""
    from s2s.recipe_files import packaged_recipes

    for name in packaged_recipes():
        train = load_recipe(name).train
        assert train.max_steps and not train.max_minutes, name

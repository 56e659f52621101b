"""Self-critical training: the CIDEr-D reward, sampling with log-probabilities, the baseline, and
a captioning run that switches from cross-entropy to it (and resumes exactly)."""

import json

import pytest
import torch

from s2s.data.tokenizer import BOS, EOS
from s2s.errors import UserError
from s2s.recipe import load_recipe
from s2s.self_critical import CiderD, caption_ids, sample, self_critical_loss
from s2s.train import train

from conftest import step_through, write_recipe
from test_train import final_weights

CORPUS = [["a small red circle above", "a small red circle above"], ["two dogs run on grass", "dogs play on the grass"],
          ["a man rides a bike", "a person on a bike"]]


def test_cider_d_is_ten_for_the_references_themselves_and_zero_for_unrelated_words():
    cider = CiderD(CORPUS)
    assert cider.score("a small red circle above", 0) == pytest.approx(10.0)
    assert cider.score("blue square", 0) == 0.0
    assert 0 < cider.score("dogs on the grass", 1) < 10.0


def test_corpus_cider_d_is_the_mean_over_images_of_their_caption():
    cider = CiderD(CORPUS)
    captions = ["a small red circle above", "dogs on the grass", "blue square"]
    assert cider.corpus(captions) == pytest.approx(sum(cider.score(c, i) for i, c in enumerate(captions)) / 3)
    assert 10.0 / 3 < cider.corpus(captions) < 20.0 / 3


def test_cider_d_gives_words_every_image_uses_no_weight():
    cider = CiderD([["a cat", "a cat"], ["a dog", "a dog"]])
    assert cider.score("a", 0) == 0.0  # "a" is in every image's references: idf log(2/2) = 0
    assert cider.score("cat", 0) > 0.0


def test_cider_d_penalises_length_differences():
    cider = CiderD(CORPUS)
    assert cider.score("two dogs run on grass grass grass grass", 1) < cider.score("two dogs run on grass", 1)


def test_baseline_is_the_other_samples_mean():
    logprob = torch.zeros(4, requires_grad=True)
    rewards = torch.tensor([1.0, 0.0, 3.0, 3.0])  # image 0: samples 0 and 1; image 1: 2 and 3
    self_critical_loss(rewards, logprob, samples=2).backward()
    # d loss / d logprob = -(r - mean of the others): the better sample is pushed up
    torch.testing.assert_close(logprob.grad, torch.tensor([-1.0, 1.0, 0.0, 0.0]))


def test_sampled_log_probability_is_the_teacher_forced_one():
    from test_captioning import captioner, images_and_captions

    model = captioner()
    images, _ = images_and_captions()
    torch.manual_seed(3)
    tokens, logprob = sample(model, images, samples=4, max_len=6)
    assert tokens.shape[0] == 12 and tokens.shape[1] <= 6 and logprob.requires_grad
    for row in tokens.tolist():  # EOS ends every caption and nothing but EOS follows it
        assert EOS in row and set(row[row.index(EOS):]) == {EOS}
    ids = caption_ids(tokens)
    assert all(EOS not in c for c in ids)
    src = images.repeat_interleave(4, 0)
    mask = torch.ones(12, 1, dtype=torch.bool)
    tgt = torch.cat([torch.full((12, 1), BOS), tokens], 1)
    with torch.no_grad():
        logits, _, _ = step_through(model, src, mask, tgt[:, :-1])
    lprobs = torch.log_softmax(logits, -1).gather(2, tokens[:, :, None]).squeeze(2)  # (N, T)
    lengths = torch.tensor([len(c) + 1 for c in ids])  # EOS counts
    keep = torch.arange(tokens.size(1))[None, :] < lengths[:, None]
    torch.testing.assert_close(logprob.detach(), (lprobs * keep).sum(1), rtol=1e-4, atol=1e-4)


def shapes_recipe(tmp_path, *overrides):
    from test_captioning import TINY_SHAPES

    path = write_recipe(tmp_path / "tiny-shapes.yaml", TINY_SHAPES)
    return load_recipe(str(path), ["train.max_steps=8", "train.eval_every=4", "train.log_every=1",
                                   "train.self_critical_from=4", "train.self_critical_images=8",
                                   "train.self_critical_samples=3", "train.self_critical_lr=1e-3",
                                   *overrides])


def records(run_dir, kind):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == kind]


@pytest.fixture(scope="module")
def scst_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scst")
    train(shapes_recipe(folder), folder / "run", device="cpu", log=lambda *a: None)
    return folder


def test_captioning_switches_to_self_critical_training_and_resumes_exactly(scst_run, tmp_path):
    steps = records(scst_run / "run", "train")
    assert [("loss" in r, "reward" in r) for r in steps] == [(True, False)] * 4 + [(False, True)] * 4
    assert [r["lr"] for r in steps[4:]] == [1e-3] * 4
    assert steps[4]["epoch"] == steps[3]["epoch"] + 1  # self-critical epochs go over images
    # stopped in the self-critical phase and resumed: the same run
    train(shapes_recipe(tmp_path, "train.max_steps=6"), tmp_path / "run", device="cpu", log=lambda *a: None)
    train(shapes_recipe(tmp_path), tmp_path / "run", device="cpu", resume=True, log=lambda *a: None)
    resumed = records(tmp_path / "run", "train")
    assert [(r["step"], r["epoch"]) for r in resumed] == [(r["step"], r["epoch"]) for r in steps]
    value = lambda r: r.get("reward", r.get("loss"))  # noqa: E731
    assert [value(r) for r in resumed] == pytest.approx([value(r) for r in steps], rel=1e-6)
    wa, wb = final_weights(scst_run / "run"), final_weights(tmp_path / "run")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-6, atol=1e-7, msg=key)


def test_self_critical_needs_a_captioning_recipe_and_two_samples(tmp_path, tiny_recipe):
    with pytest.raises(UserError, match="captioning recipes only"):  # when the recipe is loaded
        train(load_recipe(str(tiny_recipe), ["train.self_critical_from=2"]), tmp_path / "a",
              device="cpu", log=lambda *a: None)
    with pytest.raises(UserError, match="at least 2"):
        train(shapes_recipe(tmp_path, "train.self_critical_samples=1"), tmp_path / "b",
              device="cpu", log=lambda *a: None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written

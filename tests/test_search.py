"""Greedy and beam search, on scripted models (exact answers) and on real small models."""

import itertools
import math

import pytest
import torch

from s2s.attention import ATTENTION, attention_config
from s2s.data.tokenizer import BOS, EOS
from s2s.models import Seq2Seq, build_model
from s2s.models.rnn import RNNConfig
from s2s.search import BeamSearch, beam_search, greedy, max_lengths, step_together

A, B = 4, 5  # the scripted models' two real tokens; 0-3 are PAD UNK BOS EOS
NEG = float("-inf")


class MarkovModel(Seq2Seq):
    """Scripted decoder: log p(next | previous token) from a fixed table; no network at all."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 6):
        super().__init__()
        self.generator = torch.nn.Linear(1, vocab)  # unused; satisfies the protocol
        self.table = torch.full((vocab, vocab), NEG)
        self.table[:, EOS] = 0.0  # unscripted rows (e.g. after a dead beam's token) just end
        for prev, row in table.items():
            self.table[prev] = NEG
            for tok, p in row.items():
                self.table[prev, tok] = math.log(p)

    def encode(self, src, src_mask):
        return {"memory": src[:, :, None].float(), "mask": src_mask}

    def step(self, state, prev_tokens):
        return self.table[prev_tokens], state, None


# greedy takes A (0.6) then must end: 0.6 * 0.5 * ... ; the best sequence starts with B (0.4)
TRAP = {BOS: {A: 0.6, B: 0.4},
        A: {A: 0.3, B: 0.2, EOS: 0.5},
        B: {B: 0.1, A: 0.0001, EOS: 0.8999}}


def src_batch(n=1, length=3):
    src = torch.full((n, length), 7)
    return src, src != 0


def test_beam_finds_what_greedy_misses_with_exact_scores():
    model = MarkovModel(TRAP)
    src, mask = src_batch()
    limit = torch.tensor([6])
    g = greedy(model, src, mask, limit, length_penalty=0.0)[0][0]
    assert g.tokens == [A] and g.score == pytest.approx(math.log(0.6 * 0.5))
    best = beam_search(model, src, mask, limit, beam=2, length_penalty=0.0)[0][0]
    assert best.tokens == [B] and best.score == pytest.approx(math.log(0.4 * 0.8999))


def test_n_best_lists_hypotheses_in_score_order_with_length_penalty():
    model = MarkovModel(TRAP)
    src, mask = src_batch()
    hyps = beam_search(model, src, mask, torch.tensor([6]), beam=3, length_penalty=1.0, n_best=3)[0]
    assert [h.tokens for h in hyps][:2] == [[B], [A]]
    assert hyps[0].score == pytest.approx(math.log(0.4 * 0.8999) / 2)  # 2 tokens with EOS
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def brute_force(table: MarkovModel, max_len: int, alpha: float):
    """Best sequence over all sequences of real tokens that end in EOS within max_len."""
    best = (NEG, None)
    for n in range(max_len):
        for seq in itertools.product([A, B], repeat=n):
            path = [BOS, *seq, EOS]
            lp = sum(table.table[p, q].item() for p, q in zip(path, path[1:]))
            best = max(best, (lp / (n + 1) ** alpha, list(seq)), key=lambda x: x[0])
    return best


@pytest.mark.parametrize("seed", range(5))
def test_a_beam_wider_than_the_search_space_is_exact(seed):
    g = torch.Generator().manual_seed(seed)
    probs = {prev: dict(zip([A, B, EOS], torch.rand(3, generator=g).softmax(0).tolist()))
             for prev in (BOS, A, B)}
    model = MarkovModel(probs)
    src, mask = src_batch()
    for alpha in (0.0, 1.0):
        score, tokens = brute_force(model, 4, alpha)
        hyp = beam_search(model, src, mask, torch.tensor([4]), beam=30, length_penalty=alpha)[0][0]
        assert hyp.tokens == tokens and hyp.score == pytest.approx(score)


def test_output_is_cut_at_the_length_budget():
    model = MarkovModel({BOS: {A: 1.0}, A: {A: 1.0}})  # would never end by itself
    src, mask = src_batch(2)
    limit = torch.tensor([3, 5])
    assert [h[0].tokens for h in greedy(model, src, mask, limit)] == [[A, A], [A, A, A, A]]
    assert [h[0].tokens for h in beam_search(model, src, mask, limit, 2)] == [[A, A], [A, A, A, A]]


def real_model(attention="additive", seed=0):
    torch.manual_seed(seed)
    settings = {"heads": 2} if attention == "multihead" else {}
    cfg = RNNConfig(emb_dim=16, hidden_dim=32, attention=attention_config(attention, **settings),
                    init_scale=0.5, dropout=0.0)
    return build_model(cfg, 40, 40).eval()


def random_sources(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (n,), generator=g)
    src = torch.zeros(n, int(lengths.max()), dtype=torch.long)
    for i, length in enumerate(lengths.tolist()):
        src[i, :length] = torch.randint(4, 40, (length,), generator=g)
    return src, src != 0


@pytest.mark.parametrize("attention", ATTENTION.names())
def test_beam_one_equals_greedy(attention):
    model = real_model(attention)
    src, mask = random_sources()
    limit = max_lengths(mask, 1.5, 4)
    g = greedy(model, src, mask, limit)
    b = beam_search(model, src, mask, limit, beam=1)
    assert [h[0].tokens for h in g] == [h[0].tokens for h in b]
    assert [h[0].score for h in g] == pytest.approx([h[0].score for h in b])


def test_beam_output_does_not_depend_on_batch_composition():
    model = real_model()
    src, mask = random_sources(8, seed=3)
    limit = max_lengths(mask, 1.5, 4)
    together = beam_search(model, src, mask, limit, beam=4, n_best=2)
    for i in range(len(src)):
        n = int(mask[i].sum())
        alone = beam_search(model, src[i:i + 1, :n], mask[i:i + 1, :n], limit[i:i + 1], beam=4,
                            n_best=2)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], abs=1e-4)


def test_coverage_penalty_adds_wu_et_al_term_to_finished_scores():
    """score = log p / length**lp + beta * sum_j log(min(attention received by j, 1))."""
    from s2s.search import coverage_penalty

    model = real_model("coverage", seed=2)
    src, mask = random_sources(4, seed=5)
    limit = max_lengths(mask, 1.5, 4)
    plain = beam_search(model, src, mask, limit, beam=3)
    penalised = beam_search(model, src, mask, limit, beam=3, coverage_beta=0.5)
    for i, (a, b) in enumerate(zip(plain, penalised)):
        tokens = torch.tensor([[BOS] + b[0].tokens])
        with torch.no_grad():
            _, weights = model(src[i:i + 1], mask[i:i + 1], tokens)  # (1, 1, 1, T + 1, S)
        received = weights[0, 0, 0].sum(0).masked_fill(~mask[i], 1.0)
        with torch.no_grad():
            logits, _ = model(src[i:i + 1], mask[i:i + 1], tokens)
        target = torch.tensor(b[0].tokens + [EOS])
        logprob = torch.log_softmax(logits[0], -1).gather(1, target[:, None]).sum().item()
        expected = logprob / len(target) + coverage_penalty(received, 0.5).item()
        assert b[0].score == pytest.approx(expected, abs=1e-4)
        assert b[0].score <= a[0].score + 1e-6 or b[0].tokens != a[0].tokens


def transformer_model(seed=0):
    from s2s.models.transformer import TransformerConfig

    torch.manual_seed(seed)
    cfg = TransformerConfig(d_model=32, heads=4, ffn_dim=64, enc_layers=2, dec_layers=2, dropout=0.0)
    return build_model(cfg, 40, 40).eval()


@pytest.mark.parametrize("make_model", [transformer_model, real_model], ids=["transformer", "rnn"])
def test_searches_stepping_together_give_what_each_gives_alone(make_model):
    """Continuous batching: batches that start at different steps, with sources of different
    lengths and different beams, share forward passes and still get exactly their own output."""
    model = make_model()
    batches = [(random_sources(4, seed), beam) for seed, beam in ((1, 4), (2, 2), (3, 4))]
    alone = [beam_search(model, src, mask, max_lengths(mask, 1.5, 4), beam, n_best=2)
             for (src, mask), beam in batches]
    results = [[None] * 4 for _ in batches]
    searches, step = [], 0
    with torch.no_grad():
        while step < 2 * len(batches) or searches:
            if step % 2 == 0 and step // 2 < len(batches):  # a new batch joins every other step
                k = step // 2
                (src, mask), beam = batches[k]
                searches.append(BeamSearch(model, src, mask, max_lengths(mask, 1.5, 4), beam,
                                           n_best=2, tags=[(k, i) for i in range(4)]))
            for (k, i), hyps in step_together(model, searches):
                results[k][i] = hyps
            searches = [s for s in searches if len(s)]
            step += 1
    for mine, expected in zip(results, alone):
        assert [[h.tokens for h in n] for n in mine] == [[h.tokens for h in n] for n in expected]
        assert [h.score for n in mine for h in n] == pytest.approx(
            [h.score for n in expected for h in n], abs=1e-4)

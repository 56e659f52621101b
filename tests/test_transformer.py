"""The Transformer honours the protocol: causal, padding-invariant, and its KV-cached steps
equal the full teacher-forced pass."""

import pytest
import torch

from s2s.attention import record_attention
from s2s.models import build_model
from s2s.models.transformer import TransformerConfig, sinusoids
from s2s.search import beam_search, greedy, max_lengths

from conftest import step_through


def model(**kwargs):
    torch.manual_seed(0)
    cfg = TransformerConfig(d_model=32, heads=4, ffn_dim=64, enc_layers=2, dec_layers=2,
                            dropout=0.0, **kwargs)
    return build_model(cfg, 40, 40).eval()


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 40, (3, 7), generator=g)
    src[1, 5:] = 0
    src[2, 2:] = 0
    tgt = torch.randint(4, 40, (3, 6), generator=g)
    return src, src != 0, tgt


VARIANTS = [dict(norm=n, positions=p, share_embeddings=s, tie_output=s)
            for n in ("pre", "post") for p in ("sinusoidal", "learned") for s in (True, False)]


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: "-".join(str(v) for v in k.values()))
def test_cached_steps_equal_the_full_pass(kwargs):
    m = model(**kwargs)
    src, mask, tgt = batch()
    with record_attention():
        logits, weights = m(src, mask, tgt)
        steps, step_weights, state = step_through(m, src, mask, tgt)
    torch.testing.assert_close(steps, logits, rtol=1e-4, atol=1e-5)
    assert weights.shape == (3, 2, 4, 6, 7)  # (B, layers, heads, T, S)
    torch.testing.assert_close(torch.cat(step_weights, 3), weights, rtol=1e-4, atol=1e-5)
    assert weights[2, ..., 2:].abs().max() == 0  # source padding is never attended
    assert state["self.0"][0].shape == (3, 4, 6, 8)  # the cache grew one position per step


def test_changing_a_future_token_never_changes_an_earlier_output():
    m = model()
    src, mask, tgt = batch()
    before, _ = m(src, mask, tgt)
    changed = tgt.clone()
    changed[:, 4:] = torch.randint(4, 40, (3, 2))
    after, _ = m(src, mask, changed)
    torch.testing.assert_close(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4:], after[:, 4:])


def test_extra_padding_changes_nothing():
    m = model()
    src, mask, tgt = batch()
    short, _ = m(src, mask, tgt)
    padded_src = torch.cat([src, torch.zeros(3, 5, dtype=torch.long)], 1)
    padded_tgt = torch.cat([tgt, torch.zeros(3, 3, dtype=torch.long)], 1)
    long, _ = m(padded_src, padded_src != 0, padded_tgt)
    torch.testing.assert_close(short, long[:, :6], rtol=1e-5, atol=1e-5)


def test_sinusoids_follow_the_formula():
    table = sinusoids(50, 16)
    i, j = 7, 3
    assert table[i, 2 * j].item() == pytest.approx(torch.sin(torch.tensor(i / 10000 ** (2 * j / 16))).item())
    assert table[i, 2 * j + 1].item() == pytest.approx(torch.cos(torch.tensor(i / 10000 ** (2 * j / 16))).item())


def test_beam_one_equals_greedy_and_batches_do_not_matter():
    m = model()
    src, mask, _ = batch(3)
    limit = max_lengths(mask, 1.5, 4)
    g = greedy(m, src, mask, limit)
    b = beam_search(m, src, mask, limit, beam=1)
    assert [h[0].tokens for h in g] == [h[0].tokens for h in b]
    wide = beam_search(m, src, mask, limit, beam=4)
    for i in range(3):
        n = int(mask[i].sum())
        alone = beam_search(m, src[i:i + 1, :n], mask[i:i + 1, :n], limit[i:i + 1], beam=4)
        assert alone[0][0].tokens == wide[i][0].tokens


def test_over_long_input_is_a_user_error():
    from s2s.errors import UserError

    m = model(max_positions=8)
    src = torch.randint(4, 40, (1, 9))
    with pytest.raises(UserError, match="max_positions"):
        m.encode(src, src != 0)

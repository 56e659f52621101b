"""Every architecture honours the protocol: incremental steps equal the teacher-forced pass."""

import pytest
import torch

from s2s.attention import ATTENTION, attention_config
from s2s.models import build_model
from s2s.models.rnn import RNNConfig

from conftest import step_through

VARIANTS = [dict(attention=attention_config(t, **({"heads": 2} if t == "multihead" else {})),
                 input_feed=feed, cell=cell)
            for t in ATTENTION.names()
            for feed in (True, False) for cell in ("gru", "lstm")]


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 30, (3, 7), generator=g)
    src[1, 4:] = 0
    src[2, 2:] = 0
    tgt = torch.randint(4, 30, (3, 5), generator=g)
    return src, src != 0, tgt


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: f"{k['attention'].type}-"
                         f"{'feed' if k['input_feed'] else 'parallel'}-{k['cell']}")
def test_rnn_steps_equal_teacher_forcing(kwargs):
    torch.manual_seed(0)
    model = build_model(RNNConfig(emb_dim=16, hidden_dim=32, enc_layers=2, dec_layers=2,
                                  **kwargs), 30, 30).eval()
    src, mask, tgt = batch()
    logits, weights = model(src, mask, tgt)
    steps, step_weights, _ = step_through(model, src, mask, tgt)
    torch.testing.assert_close(steps, logits, rtol=1e-5, atol=1e-5)
    if kwargs["attention"].type in ("none", "multihead"):  # none has none; MHA only when recorded
        assert weights is None
    else:
        assert weights.shape == (3, 1, 1, 5, 7)
        torch.testing.assert_close(torch.cat(step_weights, 3), weights)
        assert weights[2, ..., 2:].abs().max() == 0  # padding never attended


def test_encoder_ignores_padding():
    torch.manual_seed(0)
    model = build_model(RNNConfig(emb_dim=16, hidden_dim=32), 30, 30).eval()
    src, mask, tgt = batch()
    padded = torch.cat([src, torch.zeros(3, 4, dtype=torch.long)], 1)
    short, _ = model(src, mask, tgt)
    long, _ = model(padded, padded != 0, tgt)
    torch.testing.assert_close(short, long)


def test_no_attention_decoder_sees_one_fixed_context():
    """The baseline's context is the same vector C at every step, whatever the query."""
    torch.manual_seed(0)
    model = build_model(RNNConfig(emb_dim=16, hidden_dim=32, attention=attention_config("none")),
                        30, 30).eval()
    src, mask, _ = batch()
    state = model.encode(src, mask)
    c0 = state["context"].clone()
    for token in (5, 6, 7):
        _, state, weights = model.step(state, torch.full((3,), token))
        assert weights is None
        torch.testing.assert_close(state["context"], c0)


def test_tied_and_shared_embeddings_are_one_tensor():
    model = build_model(RNNConfig(emb_dim=16, hidden_dim=32, share_embeddings=True,
                                  tie_output=True), 30, 30)
    assert model.src_embed.weight is model.tgt_embed.weight is model.generator.weight


def test_training_lowers_the_loss():
    """Adam steps on a copy task take the loss far below the unigram entropy (log 16 ~ 2.8)."""
    torch.manual_seed(0)
    model = build_model(RNNConfig(emb_dim=32, hidden_dim=64, dropout=0.0), 20, 20)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        src = torch.randint(4, 20, (32, 6))
        tgt_in = torch.cat([torch.full((32, 1), 2), src], 1)
        tgt_out = torch.cat([src, torch.full((32, 1), 3)], 1)
        logits, _ = model(src, src != 0, tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 20), tgt_out.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 < 0.2 * losses[0]


TRANSFORMER_CROSS = [t for t in ATTENTION.names() if t != "none"]


@pytest.mark.parametrize("kind", TRANSFORMER_CROSS)
def test_any_mechanism_as_transformer_cross_attention_steps_equal_teacher_forcing(kind):
    """`model.cross_attention: {type: ...}`: every registered mechanism, stateful ones included."""
    from s2s.models.transformer import TransformerConfig

    torch.manual_seed(0)
    cross = attention_config(kind, **({"heads": 2} if kind == "multihead" else {}))
    model = build_model(TransformerConfig(d_model=16, heads=2, ffn_dim=32, enc_layers=1,
                                          dec_layers=2, dropout=0.0, cross_attention=cross),
                        30, 30).eval()
    src, mask, tgt = batch()
    logits, weights = model(src, mask, tgt)
    steps, step_weights, _ = step_through(model, src, mask, tgt)
    torch.testing.assert_close(steps, logits, rtol=1e-4, atol=1e-5)
    if weights is not None:  # single-head mechanisms always return theirs
        assert weights.shape == (3, 2, 1, 5, 7)
        torch.testing.assert_close(torch.cat(step_weights, 3), weights, rtol=1e-4, atol=1e-5)

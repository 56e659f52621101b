"""fp32 CPU decoding multiplies by oneDNN-packed copies of the linear weights."""

import pytest
import torch
from torch import nn

from s2s.data.corpus import load_split, text_pairs
from s2s.packed import PackedLinear, pack_linears, unpack_linears
from s2s.run import Run
from s2s.translate import DecodeOptions, translate_ids

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason="this PyTorch build has no oneDNN")


def test_packed_linear_computes_what_linear_computes():
    torch.manual_seed(0)
    layer = nn.Linear(64, 300)
    model = nn.Sequential(layer)
    plain = nn.Linear(64, 300)
    plain.load_state_dict(layer.state_dict())
    assert pack_linears(model) == 1 and isinstance(layer, PackedLinear)
    for shape in [(5, 64), (3, 7, 64), (400, 64)]:
        x = torch.randn(shape)
        with torch.inference_mode():
            torch.testing.assert_close(layer(x), plain(x), rtol=1e-4, atol=1e-5)
    assert layer.state_dict().keys() == plain.state_dict().keys()
    assert layer.state_dict()._metadata[""] == plain.state_dict()._metadata[""]  # same version


def test_changed_or_trained_weights_are_never_read_from_a_stale_copy():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    pack_linears(nn.Sequential(layer))
    x = torch.randn(4, 16)
    with torch.no_grad():
        layer.weight.mul_(2.0)  # e.g. an optimizer step or a weight average
        assert torch.allclose(layer(x), x @ layer.weight.T + layer.bias, atol=1e-5)
    out = layer(x)  # gradients on: the parameters themselves, so training works
    out.sum().backward()
    assert layer.weight.grad is not None


def test_runs_opened_for_cpu_decoding_are_packed_and_translate_the_same(transformer_run):
    run = Run.open(transformer_run, device="cpu", precision="fp32")
    assert isinstance(run.model.decoder.generator, PackedLinear)
    assert run.model.decoder.generator.weight is run.model.decoder.embed.weight  # still tied
    pairs = text_pairs(load_split(run.recipe.data, "test"), run.recipe.data)
    sources = run.tokenizer.encode_src(list(pairs["src"])[:200])
    opts = DecodeOptions.from_run(run, beam=4, n_best=2)
    packed = translate_ids(run, sources, opts)
    unpack_linears(run.model)
    assert not any(isinstance(m, PackedLinear) for m in run.model.modules())
    plain = translate_ids(run, sources, opts)
    assert [[h.text for h in n] for n in packed] == [[h.text for h in n] for n in plain]
    scores = [(a.score, b.score) for x, y in zip(packed, plain) for a, b in zip(x, y)]
    assert max(abs(a - b) for a, b in scores) < 1e-3
    assert not any(isinstance(m, PackedLinear)
                   for m in Run.open(transformer_run, device="cpu", quantize="int8").model.modules())

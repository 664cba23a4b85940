"""multi_scale_inference against the official Cityscapes-style inference (fixture)."""

import numpy as np
import pytest
import torch
from torch import nn

from lib import models
from lib.config import ConfigError, get_config
from lib.core.inference import (
    InferenceSettings,
    ScaleFusion,
    multi_scale_inference,
    sliding_windows,
)
from lib.core.tiling import tiled_inference, tiled_predict


def test_sliding_windows_cover_and_stay_inside():
    boxes = sliding_windows(150, 300, 64, 128)
    assert len(boxes) == 3 * 3
    assert all(h1 - h0 == 64 and w1 - w0 == 128 for h0, h1, w0, w1 in boxes)
    assert max(h1 for _, h1, _, _ in boxes) == 150 and max(w1 for *_, w1 in boxes) == 300
    assert sliding_windows(40, 100, 64, 128) == [(0, 40, 0, 100)]  # image smaller than the crop


class Constant(nn.Module):
    """Returns log-probabilities that do not depend on the window: exact averaging check."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, _, h, w = x.shape
        out = torch.stack([x[:, 0] * 0 + 0.25, x[:, 0] * 0 + 0.75], 1).log()
        return [out[:, :, ::4, ::4], out[:, :, ::4, ::4]]


def test_window_batching_does_not_change_the_result():
    model = Constant()
    image = torch.randn(1, 3, 50, 120)
    kw = dict(num_classes=2, scales=[0.75, 1.0, 2.0], flip=True, base_size=120, crop_size=[32, 48])
    a = multi_scale_inference(model, image, window_batch=1, **kw)
    b = multi_scale_inference(model, image, window_batch=5, **kw)
    assert torch.allclose(a, b)
    assert torch.allclose(a[0, 0], torch.full((50, 120), 0.75))
    assert torch.allclose(a[0, 1], torch.full((50, 120), 2.25))


def _official_model(parity, official_dir):
    cfg = get_config(official_dir / "w18s1_ocr.yaml")
    model = models.get_seg_model(cfg)
    model.load_state_dict(parity["state_dict"], strict=True)
    # The fixture's ms_pred/ss_pred were computed after the train-mode forward that produced
    # train_aux/train_out, which updated the BatchNorm running statistics once; replay it.
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.Dropout, nn.Dropout2d)):
            m.eval()
    with torch.no_grad():
        model(parity["input"])
    return model.eval()


def test_multi_scale_inference_matches_official(parity, official_dir):
    model = _official_model(parity, official_dir)
    image = parity["ms_image"][None]
    kw = dict(num_classes=2, base_size=parity["ms_base_size"], crop_size=parity["ms_crop_size"])
    ms = multi_scale_inference(
        model, image, scales=parity["ms_scales"], flip=parity["ms_flip"], window_batch=3, **kw
    )
    ss = multi_scale_inference(model, image, scales=[1.0], flip=False, **kw)
    assert ms.shape == parity["ms_pred"].shape == (1, 2, 90, 200)
    torch.testing.assert_close(ms, parity["ms_pred"], rtol=1e-3, atol=0)
    torch.testing.assert_close(ss, parity["ss_pred"], rtol=1e-3, atol=0)


class SeesWireWhenSmall(nn.Module):
    """Wire (class 1) with probability 0.9 where the input is at most `small` pixels wide, else
    0.2: a wire the network finds only at one scale, as a wide wire is found shrunk."""

    def __init__(self, small: int):
        super().__init__()
        self.small = small

    def forward(self, x):
        n, _, h, w = x.shape
        p = 0.9 if w <= self.small else 0.2
        out = torch.stack([x[:, 0] * 0 + (1 - p), x[:, 0] * 0 + p], 1).log()
        return [out, out]


def test_wire_max_keeps_a_wire_seen_at_one_scale_where_the_sum_loses_it():
    image = torch.randn(1, 3, 40, 80)
    kw = dict(num_classes=2, scales=[0.5, 1.0], flip=False, base_size=80, crop_size=[40, 80])
    model = SeesWireWhenSmall(small=40)
    summed = multi_scale_inference(model, image, **kw)
    fused = multi_scale_inference(model, image, fuse="wire_max", **kw)
    # official: exp-logits summed, P(wire) = (0.9 + 0.2) / 2 = 0.55 -- at a threshold of 0.6 lost
    torch.testing.assert_close(summed[0, 1], torch.full((40, 80), 1.1))
    # wire_max: P(wire) is the larger of 0.9 and 0.2; background takes the rest
    torch.testing.assert_close(fused[0, 1], torch.full((40, 80), 0.9))
    torch.testing.assert_close(fused[0, 0], torch.full((40, 80), 0.1))
    # with one scale the fusion is the softmax, and so is the sum
    one = dict(kw, scales=[1.0])
    torch.testing.assert_close(
        multi_scale_inference(model, image, fuse="wire_max", **one),
        multi_scale_inference(model, image, **one),
    )


def test_wire_max_with_several_wire_classes_shares_the_rest_by_the_mean():
    fusion = ScaleFusion("wire_max", wire_classes=[1, 2])
    fusion.add(torch.tensor([0.5, 0.1, 0.1, 0.3]).view(1, 4, 1, 1) * 7)  # exp-logits, any scale
    fusion.add(torch.tensor([0.2, 0.6, 0.1, 0.1]).view(1, 4, 1, 1))
    out = fusion.result().flatten()
    torch.testing.assert_close(out[1:3], torch.tensor([0.6, 0.1]))  # the wire classes' maxima
    # the other classes share 1 - 0.7 in proportion to their mean (0.35 : 0.2)
    torch.testing.assert_close(out[[0, 3]], torch.tensor([0.3 * 0.35 / 0.55, 0.3 * 0.2 / 0.55]))
    torch.testing.assert_close(out.sum(), torch.tensor(1.0))
    # the wire maxima summing past 1 are scaled down to 1, and nothing is left to the others
    fusion = ScaleFusion("wire_max", wire_classes=[1, 2])
    fusion.add(torch.tensor([0.0, 0.9, 0.1]).view(1, 3, 1, 1))
    fusion.add(torch.tensor([0.0, 0.1, 0.9]).view(1, 3, 1, 1))
    torch.testing.assert_close(fusion.result().flatten(), torch.tensor([0.0, 0.5, 0.5]))


def test_an_unknown_fusion_is_refused():
    with pytest.raises(ValueError, match="scale fusion 'mean'; use one of sum, wire_max"):
        ScaleFusion("mean")
    with pytest.raises(ConfigError, match="TEST.SCALE_FUSE is 'max'"):
        get_config(None, ["TEST.SCALE_FUSE", "max"])


def test_tiled_prediction_fuses_the_scales_the_same_way():
    model = SeesWireWhenSmall(small=40)
    photo = np.random.default_rng(0).integers(0, 256, (40, 80, 3), dtype=np.uint8)
    kw = dict(num_classes=2, tile_size=(64, 128), scales=[0.5, 1.0], align_corners=False)
    summed = tiled_inference(model, photo, **kw)
    fused = tiled_inference(model, photo, fuse="wire_max", **kw)
    torch.testing.assert_close(summed[0, 1], torch.full((40, 80), 1.1))
    torch.testing.assert_close(fused[0, 1], torch.full((40, 80), 0.9))
    # at a threshold of 0.6 the sum (P = 0.55) loses the wire, the fusion keeps it
    assert not tiled_predict(model, photo, wire_threshold=0.6, **kw).any()
    assert tiled_predict(model, photo, wire_threshold=0.6, fuse="wire_max", **kw).all()


def test_inference_settings_are_the_test_section_and_shrink_below_zoom_one():
    cfg = get_config(None, ["TEST.SCALE_LIST", "[0.75, 2.0]", "TEST.FLIP_TEST", "True",
                            "TEST.IMAGE_SIZE", "[48, 32]", "TEST.BASE_SIZE", "120"])
    settings = InferenceSettings.from_cfg(cfg)
    assert (settings.scales, settings.flip, settings.crop_size, settings.base_size) == (
        (0.75, 2.0), True, (32, 48), 120)
    assert settings.at_zoom(2.0) is settings
    assert (settings.at_zoom(0.5).crop_size, settings.at_zoom(0.5).base_size) == ((16, 24), 60)
    model, image = Constant(), torch.randn(1, 3, 50, 120)
    two = InferenceSettings(**{**settings.__dict__, "num_classes": 2})
    expected = multi_scale_inference(model, image, num_classes=2, scales=[0.75, 2.0], flip=True,
                                     base_size=120, crop_size=[32, 48], wire_classes=[])
    assert torch.equal(two.predict(model, image), expected)

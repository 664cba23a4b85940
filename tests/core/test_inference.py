"""multi_scale_inference against the official Cityscapes-style inference (fixture)."""

import torch
from torch import nn

from lib import models
from lib.config import get_config
from lib.core.inference import multi_scale_inference, sliding_windows


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

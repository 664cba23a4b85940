"""The channels_last training path (MODEL.CHANNELS_LAST): same values, faster gradient layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lib.config import get_config
from lib.core.criterion import build_criterion
from lib.models import get_seg_model, hrnet

REPO = Path(__file__).resolve().parents[2]
DEMO_CFG = REPO / "experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_demo.yaml"
CL = torch.channels_last


def _upsample_cat_backward(x, wrap):
    """Gradient reaching the upsample's backward, and x's gradient, through cat as in the head."""
    seen = []
    up = F.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False)
    up.register_hook(seen.append)
    other = torch.zeros(2, 4, 12, 12).contiguous(memory_format=CL)
    weights = torch.arange(12.0).view(1, 12, 1, 1)
    (torch.cat([wrap(up), other], 1) * weights).sum().backward()
    grad, x.grad = x.grad, None
    return seen[0], grad


def test_dense_grad_hands_on_a_dense_channels_last_gradient():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=CL).requires_grad_()
    reaching, plain = _upsample_cat_backward(x, lambda t: t)
    assert not reaching.is_contiguous(memory_format=CL)  # a channel slice of cat's gradient
    reaching, dense = _upsample_cat_backward(x, hrnet.dense_grad)
    assert reaching.is_contiguous(memory_format=CL)
    torch.testing.assert_close(dense, plain)


def test_dense_grad_is_the_identity_outside_channels_last_training():
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    assert hrnet.dense_grad(x) is x  # NCHW
    y = torch.randn(1, 3, 4, 4).contiguous(memory_format=CL)
    assert hrnet.dense_grad(y) is y  # no gradient
    z = y.clone().requires_grad_()
    with torch.no_grad():
        assert hrnet.dense_grad(z) is z


def _grads(model, x, target, criterion):
    torch.manual_seed(5)  # the same Dropout2d masks in the OCR head
    model.zero_grad(set_to_none=True)
    criterion(model(x), target).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_channels_last_training_step_has_the_gradients_of_the_plain_layout(monkeypatch):
    cfg = get_config(DEMO_CFG, ["MODEL.PRETRAINED", ""])
    torch.manual_seed(0)
    model = get_seg_model(cfg, load_pretrained=False).train()
    criterion = build_criterion(cfg)
    x = torch.randn(1, 3, 64, 64)
    target = torch.randint(0, 2, (1, 64, 64))
    model.to(memory_format=CL)
    xl = x.contiguous(memory_format=CL)
    calls = []
    original = hrnet.dense_grad
    monkeypatch.setattr(hrnet, "dense_grad", lambda t: calls.append(1) or original(t))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fast = _grads(model, xl, target, criterion)
    assert len(calls) == 3  # the three lower branches upsampled to stride 4
    model.load_state_dict(state)  # BatchNorm running statistics as before
    monkeypatch.setattr(hrnet, "dense_grad", lambda t: t)
    slow = _grads(model, xl, target, criterion)
    assert fast.keys() == slow.keys()
    for k in fast:
        assert torch.equal(fast[k], slow[k]), k


@pytest.mark.parametrize("classes", [2, 19])
def test_loss_upsampling_of_channels_last_scores_gives_the_nchw_values(classes):
    cfg = get_config(DEMO_CFG, ["MODEL.PRETRAINED", "", "DATASET.NUM_CLASSES", str(classes)])
    criterion = build_criterion(cfg)
    torch.manual_seed(1)
    score = torch.randn(2, classes, 16, 16)
    target = torch.randint(0, classes, (2, 64, 64))
    a = score.clone().requires_grad_()
    b = score.clone().contiguous(memory_format=CL).requires_grad_()
    la, lb = criterion([a, a * 0.5], target), criterion([b, b * 0.5], target)
    la.backward()
    lb.backward()
    assert torch.equal(la, lb)
    assert torch.equal(a.grad, b.grad)

"""Inference fast paths keep the fp32 eager results: BN folding, channels_last, bf16 autocast."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from lib.config import get_config
from lib.core.benchmark import calibrate, random_image
from lib.models import get_seg_model
from lib.models.bn_folding import count_batchnorms, fold_batchnorm, prepare_for_inference
from lib.utils.amp import autocast, bf16_supported

REPO = Path(__file__).resolve().parents[2]
DEMO_CFG = REPO / "experiments" / "daodixian_seg" / "seg_hrnet_ocr_w18_small_v1_demo.yaml"
SEG_HRNET_CFG = (REPO / "experiments" / "cityscapes"
                 / "seg_hrnet_w18_small_v1_512x1024_sgd_lr1e-2_wd5e-4_bs_24_epoch484.yaml")


@pytest.fixture(scope="module")
def fixture_model(official_dir, parity):
    cfg = get_config(str(official_dir / "w18s1_ocr.yaml"), [])
    model = get_seg_model(cfg, load_pretrained=False)
    model.load_state_dict(parity["state_dict"], strict=True)
    return cfg, model.eval()


def _outputs(model, x):
    with torch.no_grad():
        out = model(x)
    return out if isinstance(out, list) else [out]


def _assert_close(outs, refs, atol=1e-4, relative=False):
    """Max abs difference below `atol` (times the largest |ref| when `relative`)."""
    for out, ref in zip(outs, refs):
        assert out.shape == ref.shape
        bound = atol * max(1.0, ref.abs().max().item()) if relative else atol
        assert (out.float() - ref).abs().max().item() < bound


def test_fold_batchnorm_removes_every_bn_and_keeps_fixture_outputs(fixture_model, parity):
    _, model = fixture_model
    folded = fold_batchnorm(copy.deepcopy(model))
    assert count_batchnorms(model) > 0 and count_batchnorms(folded) == 0
    _assert_close(_outputs(folded, parity["input"]), [parity["eval_aux"], parity["eval_out"]])


def test_channels_last_keeps_fixture_outputs(fixture_model, parity):
    _, model = fixture_model
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = parity["input"].contiguous(memory_format=torch.channels_last)
    _assert_close(_outputs(fast, x), [parity["eval_aux"], parity["eval_out"]])


def test_prepare_for_inference_folds_and_goes_channels_last(fixture_model, parity):
    cfg, model = fixture_model
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.FOLD_BN, cfg.MODEL.CHANNELS_LAST = True, True
    fast = prepare_for_inference(copy.deepcopy(model).train(), cfg, "cpu")
    assert not fast.training and count_batchnorms(fast) == 0
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    _assert_close(_outputs(fast, parity["input"]), [parity["eval_aux"], parity["eval_out"]])


@pytest.mark.skipif(not bf16_supported("cpu"), reason="this CPU has no native bfloat16")
def test_bf16_autocast_agrees_on_argmax_for_99_percent_of_fixture_pixels(fixture_model, parity):
    _, model = fixture_model
    fast = fold_batchnorm(copy.deepcopy(model)).to(memory_format=torch.channels_last)
    with torch.no_grad(), autocast("cpu", torch.bfloat16):
        out = fast(parity["input"].contiguous(memory_format=torch.channels_last))[1]
    agree = (out.float().argmax(1) == parity["eval_out"].argmax(1)).float().mean().item()
    assert agree >= 0.99, f"bf16 argmax agreement {agree:.4f}"


@pytest.mark.parametrize("cfg_file", [DEMO_CFG, SEG_HRNET_CFG], ids=["seg_hrnet_ocr", "seg_hrnet"])
def test_fold_and_channels_last_match_eager_on_a_random_model(cfg_file):
    """The same without the official fixtures: small HRNet (+OCR) with calibrated random weights.

    Their logits reach about 50 (He-initialised, not trained), so 1e-4 is relative to that.
    """
    torch.manual_seed(0)
    cfg = get_config(str(cfg_file), ["DATASET.NUM_CLASSES", "3"])
    model = calibrate(get_seg_model(cfg, load_pretrained=False), size=(64, 96), passes=2)
    x = random_image(2, 64, 96, seed=1)
    ref = _outputs(model, x)
    fused = fold_batchnorm(copy.deepcopy(model)).to(memory_format=torch.channels_last)
    assert count_batchnorms(fused) == 0
    _assert_close(_outputs(fused, x.contiguous(memory_format=torch.channels_last)), ref,
                  relative=True)


def test_fold_uses_conv_bias_and_running_statistics():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-1, 1)
    seq = nn.Sequential(conv, nn.Sequential(bn, nn.ReLU()), nn.Conv2d(4, 2, 1), nn.ReLU())
    x = torch.randn(2, 3, 8, 8)
    ref = seq.eval()(x)
    folded = fold_batchnorm(copy.deepcopy(seq))
    assert isinstance(folded[1][0], nn.Identity)
    assert torch.allclose(folded(x), ref, atol=1e-5)


def test_fold_leaves_a_batchnorm_that_follows_no_conv():
    seq = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3))
    assert count_batchnorms(fold_batchnorm(seq)) == 1


def test_fold_batchnorm_folds_syncbatchnorm_too(fixture_model, parity):
    # a distributed CUDA training converts every BatchNorm2d to SyncBatchNorm (same state dict)
    _, model = fixture_model
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model)).eval()
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == count_batchnorms(model)
    folded = fold_batchnorm(synced)
    assert count_batchnorms(folded) == 0
    _assert_close(_outputs(folded, parity["input"]), [parity["eval_aux"], parity["eval_out"]])

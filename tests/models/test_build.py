"""get_seg_model: the registry, configuration errors, and the full-size model on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lib.config import get_config
from lib.models import get_seg_model
from lib.models.summary import count_gflops, count_parameters, model_summary

REPO = Path(__file__).resolve().parents[2]
W48_OCR = REPO / "experiments/cityscapes/seg_hrnet_ocr_w48_train_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml"
S1 = REPO / "experiments/cityscapes/seg_hrnet_w18_small_v1_512x1024_sgd_lr1e-2_wd5e-4_bs_24_epoch484.yaml"
DEMO_CFG = REPO / "experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_demo.yaml"


def test_unknown_model_name_lists_known_ones():
    cfg = get_config(S1, ["MODEL.NAME", "seg_hrnet_ocrr", "MODEL.PRETRAINED", ""])
    with pytest.raises(ValueError, match="'seg_hrnet_ocrr' is not a known model; known: seg_hrnet, seg_hrnet_ocr"):
        get_seg_model(cfg)


def test_num_outputs_must_match_the_model():
    cfg = get_config(S1, ["MODEL.NAME", "seg_hrnet_ocr", "MODEL.PRETRAINED", ""])
    with pytest.raises(ValueError, match="NUM_OUTPUTS is 1 but seg_hrnet_ocr has 2"):
        get_seg_model(cfg)


@pytest.mark.parametrize("override, message", [
    (["MODEL.EXTRA.STAGE2.BLOCK", "BASICC"], "STAGE2.BLOCK is 'BASICC'"),
    (["MODEL.EXTRA.STAGE3.NUM_BLOCKS", "[2, 2]"], "STAGE3.NUM_BLOCKS has 2 entries but the stage has 3 branches"),
])
def test_bad_stage_description_is_a_clear_error(override, message):
    cfg = get_config(S1, ["MODEL.PRETRAINED", "", *override])
    with pytest.raises(ValueError, match=message):
        get_seg_model(cfg)


def test_missing_pretrained_file_is_a_clear_error():
    cfg = get_config(S1, ["MODEL.PRETRAINED", "pretrained_models/nope.pth"])
    with pytest.raises(ValueError, match="nope.pth: weights file not found"):
        get_seg_model(cfg)


def test_seg_hrnet_output_is_quarter_resolution():
    cfg = get_config(S1, ["MODEL.PRETRAINED", "", "DATASET.NUM_CLASSES", "2"])
    model = get_seg_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, 2, 16, 24)
    assert "SegHRNet" in model_summary(model, 64, 96)


def test_w48_ocr_runs_on_cpu_at_cityscapes_size_with_official_cost():
    cfg = get_config(W48_OCR, ["MODEL.PRETRAINED", ""])
    model = get_seg_model(cfg)
    assert count_parameters(model) == pytest.approx(70.37e6, rel=1e-3)
    # the forward pass inside the FLOP counter is the CPU run; the official model does ~649 GFLOPs
    assert count_gflops(model, 512, 1024) == pytest.approx(649, rel=0.01)


def test_sync_batchnorm_conversion_keeps_state_dict_names():
    cfg = get_config(S1, ["MODEL.PRETRAINED", "", "DATASET.NUM_CLASSES", "2"])
    model = get_seg_model(cfg)
    names = {k: v.shape for k, v in model.state_dict().items()}
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert {k: v.shape for k, v in synced.state_dict().items()} == names


def test_flop_count_runs_on_the_meta_device_and_equals_a_real_count():

    model = get_seg_model(get_config(DEMO_CFG)).eval()
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].device.type))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 64, 96))
    seen.clear()
    assert count_gflops(model, 64, 96) == counter.get_total_flops() / 1e9
    assert seen == ["meta"]  # no real forward: a 2048x1024 count costs nothing
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert count_gflops(model, 1024, 2048) > 100 * count_gflops(model, 64, 96)

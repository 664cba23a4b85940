"""MODEL.REFINE_CHANNELS: the opt-in full-resolution refinement of the main output."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from lib.config import get_config
from lib.core.benchmark import calibrate, random_image
from lib.models import WeightsError, get_seg_model, load_trained
from lib.models.bn_folding import count_batchnorms, fold_batchnorm
from lib.models.refine import FullResolutionRefine
from tests.models.test_bn_folding import DEMO_CFG, SEG_HRNET_CFG
from tests.tools.test_export_onnx import needs_onnx


def _model(cfg_file, channels: int, classes: int = 2):
    torch.manual_seed(0)
    cfg = get_config(str(cfg_file), ["DATASET.NUM_CLASSES", str(classes), "MODEL.REFINE_CHANNELS", str(channels)])
    return get_seg_model(cfg, load_pretrained=False)


def _main(outputs):
    return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs


@pytest.mark.parametrize("cfg_file", [DEMO_CFG, SEG_HRNET_CFG], ids=["seg_hrnet_ocr", "seg_hrnet"])
def test_off_by_default_adds_no_keys_and_on_adds_only_refine_keys(cfg_file):
    off = set(_model(cfg_file, 0).state_dict())
    on = set(_model(cfg_file, 8).state_dict())
    assert not any(k.startswith("refine.") for k in off)
    assert on - off and all(k.startswith("refine.") for k in on - off)
    assert off <= on


@pytest.mark.parametrize("cfg_file", [DEMO_CFG, SEG_HRNET_CFG], ids=["seg_hrnet_ocr", "seg_hrnet"])
def test_untrained_refinement_returns_the_upsampled_official_output(cfg_file):
    model = calibrate(_model(cfg_file, 8), size=(64, 96), passes=2).eval()
    torch.nn.init.zeros_(model.refine.head.weight)  # calibrate re-initialises every conv
    torch.nn.init.zeros_(model.refine.head.bias)
    x = random_image(2, 64, 96, seed=1)
    with torch.no_grad():
        refined = model(x)
        refine, model.refine = model.refine, None
        coarse = model(x)
        model.refine = refine
    assert _main(refined).shape == (2, 2, 64, 96)  # full input resolution
    assert _main(coarse).shape == (2, 2, 16, 24)  # the official stride 4
    if isinstance(refined, list):
        assert torch.equal(refined[0], coarse[0])  # the aux output is untouched
    up = F.interpolate(_main(coarse), size=(64, 96), mode="bilinear",
                       align_corners=model.refine.align_corners)
    assert torch.equal(_main(refined), up)


def test_refinement_places_a_one_pixel_line_the_coarse_grid_cannot():
    """Given only a blurred stride-4 map, the refinement learns the exact 1-px line from the image."""
    torch.manual_seed(0)
    n, h, w = 8, 32, 32
    image = torch.zeros(n, 3, h, w)
    target = torch.zeros(n, h, w, dtype=torch.long)
    for i in range(n):  # a dark vertical line at a column that is not on the stride-4 grid
        col = 5 + 3 * i
        image[i, :, :, col] = -2.0
        target[i, :, col] = 1
    image += 0.1 * torch.randn_like(image)
    # what the stride-4 head can express: the label averaged over 4x4 cells, as logits
    cells = F.avg_pool2d(target[:, None].float(), 4)
    coarse = torch.cat([torch.zeros_like(cells), 8 * cells - 1], dim=1)

    def wire_iou(logits):
        pred = logits.argmax(1) == 1
        truth = target == 1
        return ((pred & truth).sum() / (pred | truth).sum()).item()

    refine = FullResolutionRefine(2, 8, align_corners=False)
    with torch.no_grad():
        before = wire_iou(refine(image, coarse))
    optimiser = torch.optim.Adam(refine.parameters(), lr=0.01)
    for _ in range(150):
        optimiser.zero_grad()
        F.cross_entropy(refine(image, coarse), target).backward()
        optimiser.step()
    refine.eval()
    with torch.no_grad():
        after = wire_iou(refine(image, coarse))
    assert before < 0.5  # the upsampled coarse map smears the line over its 4-px cell
    assert after > 0.95


def test_refinement_folds_its_batchnorms_and_keeps_outputs():
    model = calibrate(_model(DEMO_CFG, 8), size=(64, 96), passes=2).eval()
    assert model.refine.head.weight.abs().sum() > 0  # calibrated: the refinement matters
    x = random_image(1, 64, 96, seed=2)
    with torch.no_grad():
        ref = _main(model(x))
        fused = fold_batchnorm(copy.deepcopy(model))
        out = _main(fused(x))
    assert count_batchnorms(fused) == 0
    assert (out - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()


def test_weights_with_and_without_refinement_are_not_interchangeable(tmp_path):
    path = tmp_path / "refined.pth"
    torch.save(_model(DEMO_CFG, 8).state_dict(), path)
    cfg_on = get_config(str(DEMO_CFG), ["MODEL.REFINE_CHANNELS", "8"])
    cfg_off = get_config(str(DEMO_CFG))
    assert load_trained(cfg_on, path).refine is not None
    with pytest.raises(WeightsError, match="refined model: set MODEL.REFINE_CHANNELS"):
        load_trained(cfg_off, path)
    plain = tmp_path / "plain.pth"
    torch.save(_model(DEMO_CFG, 0).state_dict(), plain)
    with pytest.raises(WeightsError, match="no refinement: set MODEL.REFINE_CHANNELS 0"):
        load_trained(cfg_on, plain)


def test_negative_channels_are_a_clear_error():
    cfg = get_config(str(DEMO_CFG), ["MODEL.REFINE_CHANNELS", "-4"])
    with pytest.raises(ValueError, match="cannot build seg_hrnet_ocr: MODEL.REFINE_CHANNELS must be > 0"):
        get_seg_model(cfg, load_pretrained=False)


@needs_onnx
def test_refined_model_exports_to_onnx_with_parity(tmp_path):
    from lib.core.export import export_onnx, runtime_max_abs_diff

    model = calibrate(_model(DEMO_CFG, 8), size=(64, 96), passes=2).eval()
    head = export_onnx(model, tmp_path / "m.onnx", height=64, width=96, dynamic=True)
    x = random_image(1, 64, 96, seed=3)
    with torch.no_grad():
        assert head(x).shape[-2:] == (64, 96)
    assert runtime_max_abs_diff(tmp_path / "m.onnx", head, x) < 1e-3


def test_skip_head_drops_the_class_dependent_refinement_weights(tmp_path):
    """Fine-tuning a refined 19-class model to 2 classes: only logit-shaped tensors are skipped."""
    from lib.models.weights import load_weights

    path = tmp_path / "refined19.pth"
    src = _model(DEMO_CFG, 8, classes=19)
    torch.save(src.state_dict(), path)
    dst = _model(DEMO_CFG, 8, classes=2)
    with pytest.raises(WeightsError, match="shape mismatch"):
        load_weights(dst, path)
    report = load_weights(dst, path, skip_head=True)
    assert sorted(k for k in report.skipped_head if k.startswith("refine.")) == [
        "refine.fuse.0.weight", "refine.head.bias", "refine.head.weight"]
    assert torch.equal(dst.refine.image_conv[0].weight, src.refine.image_conv[0].weight)

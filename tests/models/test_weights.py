"""load_weights: official, DDP and own checkpoints; head skipping; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lib.config import get_config
from lib.models import WeightsError, get_seg_model, load_weights

REPO = Path(__file__).resolve().parents[2]
SMALL_OCR = ["MODEL.NAME", "seg_hrnet_ocr", "MODEL.NUM_OUTPUTS", "2", "MODEL.OCR.MID_CHANNELS", "32",
             "MODEL.OCR.KEY_CHANNELS", "16"]


def _small(num_classes: int, *opts: str):
    yaml = REPO / "experiments/cityscapes/seg_hrnet_w18_small_v1_512x1024_sgd_lr1e-2_wd5e-4_bs_24_epoch484.yaml"
    cfg = get_config(yaml, ["MODEL.PRETRAINED", "", "DATASET.NUM_CLASSES", str(num_classes),
                            "LOSS.BALANCE_WEIGHTS", "[0.4, 1]", *SMALL_OCR, *opts])
    torch.manual_seed(num_classes)
    return cfg, get_seg_model(cfg)


def _same(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_official_checkpoint_with_model_prefix_and_loss_weight(tmp_path):
    _, src = _small(2)
    _, dst = _small(2)
    dst.load_state_dict({k: v + 1 if v.is_floating_point() else v for k, v in dst.state_dict().items()})
    official = {f"model.{k}": v for k, v in src.state_dict().items()}
    official["loss.criterion.weight"] = torch.ones(2)
    path = tmp_path / "hrnet_ocr_official.pth"
    torch.save(official, path)
    report = load_weights(dst, path, strict=True)
    assert report.missing == [] and report.unexpected == []
    assert _same(src, dst)


def test_ddp_and_own_checkpoint_formats(tmp_path):
    _, src = _small(2)
    for state in ({f"module.{k}": v for k, v in src.state_dict().items()},
                  {"epoch": 3, "state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}},
                  {"state_dict": {f"module.model.{k}": v for k, v in src.state_dict().items()}}):
        _, dst = _small(2)
        path = tmp_path / "ckpt.pth"
        torch.save(state, path)
        load_weights(dst, path, strict=True)
        assert _same(src, dst)


def test_cityscapes_head_into_two_classes_is_refused_unless_skipped(tmp_path):
    _, src = _small(19)
    path = tmp_path / "cs19.pth"
    torch.save({f"model.{k}": v for k, v in src.state_dict().items()}, path)
    _, dst = _small(2)
    with pytest.raises(WeightsError, match=r"cs19.pth: shape mismatch .*MODEL.PRETRAINED_SKIP_HEAD"):
        load_weights(dst, path)
    report = load_weights(dst, path, skip_head=True)
    assert sorted(report.skipped_head) == ["aux_head.3.bias", "aux_head.3.weight", "cls_head.bias", "cls_head.weight"]
    assert report.missing == []
    assert torch.equal(dst.conv3x3_ocr[0].weight, src.conv3x3_ocr[0].weight)
    assert not torch.equal(dst.cls_head.weight[:2], src.cls_head.weight[:2])


def test_pretrained_key_and_skip_head_via_config(tmp_path):
    _, src = _small(19)
    path = tmp_path / "cs19.pth"
    torch.save(src.state_dict(), path)
    with pytest.raises(WeightsError, match="shape mismatch"):
        _small(2, "MODEL.PRETRAINED", str(path))
    _, model = _small(2, "MODEL.PRETRAINED", str(path), "MODEL.PRETRAINED_SKIP_HEAD", "True")
    assert torch.equal(model.conv1.weight, src.conv1.weight)


def test_bad_files_give_one_line_errors(tmp_path):
    _, model = _small(2)
    with pytest.raises(WeightsError, match="nothere.pth: weights file not found"):
        load_weights(model, tmp_path / "nothere.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth: not a readable weights file") as err:
        load_weights(model, junk)
    assert "\n" not in str(err.value)
    other = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match="other.pth: no tensor matches the model"):
        load_weights(model, other)


def test_strict_reports_missing_keys():
    _, src = _small(2)
    _, dst = _small(2)
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("cls_head")}
    with pytest.raises(WeightsError, match="strict load failed.*missing"):
        load_weights(dst, state, strict=True)
    report = load_weights(dst, state)
    assert report.missing == ["cls_head.weight", "cls_head.bias"]

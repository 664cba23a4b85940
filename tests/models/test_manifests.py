"""Parameter names and shapes equal the official models' (so official checkpoints load strictly)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lib.config import get_config
from lib.models import get_seg_model, load_weights

REPO = Path(__file__).resolve().parents[2]
CS = REPO / "experiments" / "cityscapes"
CASES = {
    "keys_seg_hrnet_ocr_w48_19cls.json": "seg_hrnet_ocr_w48_train_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml",
    "keys_seg_hrnet_w48_19cls.json": "seg_hrnet_w48_train_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml",
    "keys_seg_hrnet_w18_small_v1_19cls.json": "seg_hrnet_w18_small_v1_512x1024_sgd_lr1e-2_wd5e-4_bs_24_epoch484.yaml",
    "keys_seg_hrnet_w18_small_v2_19cls.json": "seg_hrnet_w18_small_v2_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml",
}


def _build(yaml_name: str, device: str = "meta"):
    cfg = get_config(CS / yaml_name, ["MODEL.PRETRAINED", ""])
    with torch.device(device):
        return get_seg_model(cfg)


@pytest.mark.parametrize("manifest", sorted(CASES))
def test_state_dict_names_and_shapes_match_official(official_dir, manifest):
    expected = [(k, list(s)) for k, s in json.loads((official_dir / manifest).read_text())]
    model = _build(CASES[manifest])
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert got == expected


def test_imagenet_weights_load_and_report_only_classification_keys(official_dir):
    manifest = json.loads((official_dir / "keys_timm_hrnet_w48_imagenet.json").read_text())
    state = {k: torch.zeros(s) for k, s in manifest}
    model = _build(CASES["keys_seg_hrnet_ocr_w48_19cls.json"], device="cpu")
    report = load_weights(model, state)
    assert report.unexpected == []
    assert report.classification_only and all(
        k.split(".")[0] in {"incre_modules", "downsamp_modules", "final_layer", "classifier"}
        for k in report.classification_only)
    assert len(report.classification_only) + len(report.loaded) == len(manifest)
    # everything the segmentation model lacks is its head, never a backbone tensor
    heads = ("last_layer", "conv3x3_ocr", "ocr_gather_head", "ocr_distri_head", "cls_head", "aux_head")
    assert report.missing and all(k.startswith(heads) for k in report.missing)
    assert torch.count_nonzero(model.conv1.weight) == 0  # the zeros really went in

"""tools/test.py reads official-style checkpoints (`model.` prefix + `loss.criterion.weight`)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lib.config import get_config
from lib.datasets import build_dataset
from lib.models import get_seg_model
from tests.tools.conftest import DEMO_CFG, REPO, tiny_opts


def test_test_tool_reads_official_checkpoint_naming(tiny_data, tmp_path):
    opts = tiny_opts(tiny_data, tmp_path)
    cfg = get_config(DEMO_CFG, opts)
    torch.manual_seed(0)
    model = get_seg_model(cfg)
    official = {"model." + k: v for k, v in model.state_dict().items()}
    official["loss.criterion.weight"] = torch.tensor([0.4373, 1.507])
    path = tmp_path / "hrnet_ocr_official_style.pth"
    torch.save(official, path)

    cmd = [
        sys.executable,
        str(REPO / "tools" / "test.py"),
        "--cfg",
        str(DEMO_CFG),
        *opts,
        "TEST.MODEL_FILE",
        str(path),
        "TEST.SCALE_LIST",
        "[0.75,1.0,1.5]",
        "TEST.FLIP_TEST",
        "True",
    ]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "mIoU" in run.stdout
    out = tmp_path / "output" / "daodixian_seg" / DEMO_CFG.stem
    metrics = json.loads((out / "test_metrics.json").read_text())
    pngs = sorted((out / "val_results").glob("*.png"))
    ids = sorted((out / "val_results" / "ids").glob("*.png"))
    assert len(pngs) == len(ids) == 3
    assert Image.open(pngs[0]).mode == "P"
    assert set(np.unique(np.asarray(Image.open(ids[0])))) <= {0, 255}
    # the reported numbers are those of the saved predictions against the labels, counted here
    confusion = np.zeros((2, 2), np.int64)
    dataset = build_dataset(cfg, "test")
    for i in range(len(dataset)):
        _, label, _, name = dataset[i]
        pred = np.asarray(Image.open(out / "val_results" / "ids" / f"{name}.png")) // 255
        label = label.numpy()
        valid = label != cfg.TRAIN.IGNORE_LABEL
        np.add.at(confusion, (label[valid], pred[valid]), 1)
    assert metrics["confusion_matrix"] == confusion.tolist()
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    np.testing.assert_allclose(metrics["iou"], iou, rtol=1e-6)
    assert metrics["miou"] == pytest.approx(iou.mean())
    assert metrics["pixel_acc"] == pytest.approx(np.trace(confusion) / confusion.sum())


def test_test_tool_reports_a_missing_model_file_in_one_line(tiny_data, tmp_path):
    cmd = [
        sys.executable,
        str(REPO / "tools" / "test.py"),
        "--cfg",
        str(DEMO_CFG),
        *tiny_opts(tiny_data, tmp_path),
        "TEST.MODEL_FILE",
        str(tmp_path / "nope.pth"),
    ]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2  # nothing done
    assert "nope.pth" in run.stderr and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("error: ")

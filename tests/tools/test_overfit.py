"""Slow: the W18-Small + OCR demo model overfits 8 generated 960x540 photos (wire IoU > 0.9) on CPU."""

from __future__ import annotations

import shutil
import time

import pytest

from lib.utils.checkpoint import load_file
from tests.tools.conftest import DEMO_CFG, make_dataset
from tools import train as train_tool


@pytest.mark.slow
def test_demo_model_overfits_eight_images(tmp_path):
    data = make_dataset(tmp_path / "data", num=8, val_every=0, width=960, height=540)
    lists = data / "list" / "daodixian_seg"
    shutil.copy(lists / "train.lst", lists / "val.lst")  # evaluate on the training photos
    opts = [
        "DATASET.ROOT",
        f"{data}/",
        "OUTPUT_DIR",
        str(tmp_path / "output"),
        "LOG_DIR",
        str(tmp_path / "log"),
        "WORKERS",
        "0",
        "TRAIN.MULTI_SCALE",
        "False",
        "TRAIN.FLIP",
        "False",
        "TRAIN.IMAGE_SIZE",
        "[960,540]",
        "TRAIN.BASE_SIZE",
        "960",
        "TEST.BASE_SIZE",
        "960",
        "TEST.IMAGE_SIZE",
        "[960,540]",
        "TRAIN.BATCH_SIZE_PER_GPU",
        "2",
        "TRAIN.END_EPOCH",
        "250",
        "TRAIN.EVAL_INTERVAL",
        "50",
        "TRAIN.OPTIMIZER",
        "adamw",
        "TRAIN.LR",
        "0.004",
        "TRAIN.WD",
        "0.0001",
        "TEST.BATCH_SIZE_PER_GPU",
        "4",
    ]
    start = time.perf_counter()
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 0
    minutes = (time.perf_counter() - start) / 60
    ckpt = load_file(tmp_path / "output" / "daodixian_seg" / DEMO_CFG.stem / "checkpoint.pth.tar")
    wire_iou = ckpt["metrics"]["iou"][1]
    print(f"wire IoU {wire_iou:.4f}, mIoU {ckpt['metrics']['miou']:.4f}, {minutes:.1f} min")
    # Measured here: 0.9333 in 15 min. At 640x360 (wires 2.7-6.7 px) the same model stopped at
    # 0.886 however long it trained: the stride-4 output cannot place thinner edges closer.
    assert wire_iou > 0.9

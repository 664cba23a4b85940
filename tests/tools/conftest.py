"""A tiny generated power-line dataset and the overrides that train on it in seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_CFG = REPO / "experiments" / "daodixian_seg" / "seg_hrnet_ocr_w18_small_v1_demo.yaml"


def make_dataset(root: Path, num: int, val_every: int, width: int, height: int, seed: int = 0):
    """Generate photos + JSON and convert them to <root>/daodixian_seg and <root>/list."""
    raw = root / "raw"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tools_jss" / "make_synthetic_daodixian.py"),
            "--out",
            str(raw),
            "--num",
            str(num),
            "--seed",
            str(seed),
            "--width",
            str(width),
            "--height",
            str(height),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tools_jss" / "json2lableImg_jss.py"),
            "--input",
            str(raw / "annotations.json"),
            "--images",
            str(raw / "images"),
            "--out",
            str(root / "daodixian_seg"),
            "--list-dir",
            str(root / "list" / "daodixian_seg"),
            "--val-every",
            str(val_every),
        ],
        check=True,
        capture_output=True,
    )
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """11 photos of 128x96: 8 train, 3 val (an odd val set)."""
    root = make_dataset(tmp_path_factory.mktemp("tiny"), num=11, val_every=4, width=128, height=96)
    val = (root / "list" / "daodixian_seg" / "val.lst").read_text().split("\n")
    assert len([v for v in val if v.strip()]) == 3
    return root


def tiny_opts(data: Path, out: Path, *extra: str) -> list[str]:
    """KEY VALUE overrides of the demo config for a seconds-long CPU run."""
    return [
        "DATASET.ROOT",
        f"{data}/",
        "OUTPUT_DIR",
        str(out / "output"),
        "LOG_DIR",
        str(out / "log"),
        "WORKERS",
        "0",
        "DETERMINISTIC",
        "True",
        "TRAIN.IMAGE_SIZE",
        "[64,64]",
        "TRAIN.BASE_SIZE",
        "96",
        "TRAIN.BATCH_SIZE_PER_GPU",
        "2",
        "TRAIN.END_EPOCH",
        "2",
        "TEST.BATCH_SIZE_PER_GPU",
        "1",
        "TEST.BASE_SIZE",
        "128",
        "TEST.IMAGE_SIZE",
        "[64,48]",
        # fp32, contiguous, validated every epoch: independent of the demo's speed settings
        "TRAIN.AMP",
        "",
        "MODEL.CHANNELS_LAST",
        "False",
        "TRAIN.EVAL_INTERVAL",
        "1",
        *extra,
    ]

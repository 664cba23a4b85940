"""Decoding once, at reduced resolution when that is enough, with the same geometry."""

from __future__ import annotations

import io
import random

import cv2
import numpy as np
import pytest
from PIL import Image

from lib.config import get_config
from lib.datasets import build_dataset
from lib.datasets.decode import (
    DecodeError,
    decode_image,
    decode_label,
    image_size,
    read_bytes,
    target_size,
)


def _smooth_jpeg(path, w=960, h=540):
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1).astype(
        np.uint8
    )
    Image.fromarray(image).save(path, quality=95)
    return image


@pytest.mark.parametrize(
    "size, factor", [((480, 270), 2), ((240, 135), 4), ((120, 68), 8), ((700, 394), 1)]
)
def test_reduced_decode_has_exact_target_size_and_matches_full_decode(
    tmp_path, size, factor, monkeypatch
):
    _smooth_jpeg(tmp_path / "a.jpg")
    flags = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda data, flag: flags.append(flag) or real(data, flag))
    reduced = decode_image(tmp_path / "a.jpg", size)
    assert len(flags) == 1  # one decode per image
    full = cv2.resize(decode_image(tmp_path / "a.jpg"), size, interpolation=cv2.INTER_LINEAR)
    assert reduced.shape == full.shape == (size[1], size[0], 3)
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 2.0
    expected = {
        1: cv2.IMREAD_COLOR_RGB,
        2: 16 | cv2.IMREAD_COLOR_RGB,
        4: 32 | cv2.IMREAD_COLOR_RGB,
        8: 64 | cv2.IMREAD_COLOR_RGB,
    }
    assert flags[0] == expected[factor]


def test_exif_orientation_is_applied_and_reported_in_size(tmp_path):
    pil = Image.fromarray(np.zeros((30, 50, 3), np.uint8))
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90
    buf = io.BytesIO()
    pil.save(buf, "JPEG", exif=exif.tobytes())
    (tmp_path / "r.jpg").write_bytes(buf.getvalue())
    assert image_size(read_bytes(tmp_path / "r.jpg")) == (30, 50)
    assert decode_image(tmp_path / "r.jpg").shape == (50, 30, 3)
    assert decode_image(tmp_path / "r.jpg", (15, 25)).shape == (25, 15, 3)


def test_palette_label_gives_indices_and_rgb_label_is_refused(tmp_path):
    ids = np.array([[0, 1], [2, 1]], np.uint8)
    pal = Image.fromarray(ids)
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(decode_label(tmp_path / "p.png"), ids)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DecodeError, match=r"rgb.png: label must be a single-channel"):
        decode_label(tmp_path / "rgb.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DecodeError, match="empty.png: empty file"):
        decode_label(tmp_path / "empty.png")


def test_target_size_rounds_like_official():
    assert target_size(5472, 3078, 2048) == (2048, 1152)
    assert target_size(3078, 5472, 1024) == (576, 1024)


@pytest.mark.parametrize("resampling", ["centre", "official"])
@pytest.mark.parametrize("crop", [(128, 64), (640, 400)])  # (640, 400): small scales need padding
def test_training_crop_geometry_same_with_and_without_reduced_decode(tmp_path, crop, resampling):
    (tmp_path / "list").mkdir()
    image = _smooth_jpeg(tmp_path / "list" / "a.jpg")
    label = (image[:, :, 0] > 127).astype(np.uint8)
    Image.fromarray(label).save(tmp_path / "list" / "a.png")
    (tmp_path / "l.lst").write_text("a.jpg a.png\n")
    outs = []
    for reduced in (True, False):
        cfg = get_config(
            None,
            [
                "DATASET.ROOT",
                str(tmp_path),
                "DATASET.DATASET",
                "list",
                "DATASET.NUM_CLASSES",
                "2",
                "DATASET.TRAIN_SET",
                "l.lst",
                "TRAIN.BASE_SIZE",
                "960",
                "TRAIN.IMAGE_SIZE",
                str(list(crop)),
                "DATASET.REDUCED_DECODE",
                str(reduced),
                "DATASET.LABEL_RESAMPLING",
                resampling,
            ],
        )
        ds = build_dataset(cfg, "train")
        random.seed(3)
        outs.append([ds[0] for _ in range(8)])
    for (xr, yr, _, _), (xf, yf, _, _) in zip(*outs):
        assert xr.shape == xf.shape == (3, crop[1], crop[0])
        assert (yr == yf).all()  # labels identical: same scale, crop and flip
        assert (xr - xf).abs().mean() < 0.05  # images differ only by decoder rounding


def test_centre_label_resampling_keeps_labels_on_the_image_edges(tmp_path):
    """Scaled labels sit where the scaled image's edges are; cv2.INTER_NEAREST shifts them."""
    (tmp_path / "list").mkdir()
    yy, xx = np.mgrid[0:270, 0:480]
    label = (((yy // 7) + (xx // 9)) % 2).astype(np.uint8)  # a checkerboard of small cells
    Image.fromarray(label * 255).convert("RGB").save(tmp_path / "list" / "a.png.jpg", quality=100)
    Image.fromarray(label).save(tmp_path / "list" / "a.png")
    (tmp_path / "l.lst").write_text("a.png.jpg a.png\n")
    disagreement = {}
    for resampling in ("centre", "official"):
        cfg = get_config(None, ["DATASET.ROOT", str(tmp_path), "DATASET.DATASET", "list",
                                "DATASET.NUM_CLASSES", "2", "DATASET.TRAIN_SET", "l.lst",
                                "TRAIN.BASE_SIZE", "480", "TRAIN.IMAGE_SIZE", "[128, 96]",
                                "TRAIN.FLIP", "False", "DATASET.LABEL_RESAMPLING", resampling])
        ds = build_dataset(cfg, "train")
        random.seed(5)
        wrong = 0.0
        for _ in range(12):
            x, y, _, _ = ds[0]
            red = x[0] * 0.229 + 0.485  # undo the normalisation of the red channel
            wrong += ((red > 0.5).long() != y).float().mean().item()
        disagreement[resampling] = wrong / 12
    assert disagreement["centre"] < 0.6 * disagreement["official"]
    with pytest.raises(ValueError, match="DATASET.LABEL_RESAMPLING is 'floor'"):
        build_dataset(get_config(None, ["DATASET.ROOT", str(tmp_path), "DATASET.DATASET", "list",
                                        "DATASET.TRAIN_SET", "l.lst", "DATASET.LABEL_RESAMPLING",
                                        "floor"]), "train")

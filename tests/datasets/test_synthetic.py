"""The generated power-line dataset: deterministic, and round-trips to a training batch."""

from __future__ import annotations

import json

import cv2
import numpy as np
import torch

from lib.config import get_config
from lib.datasets import build_dataset
from lib.datasets.conversion import ConvertOptions, convert
from lib.datasets.decode import decode_image, decode_label
from lib.datasets.synthetic import (
    STYLES,
    generate,
    make_aerial_image,
    make_canopy_close_image,
    make_canopy_image,
    make_image,
    make_real_image,
    make_urban_image,
)


def test_generator_is_deterministic_from_the_seed():
    a_img, a_polys = make_image(np.random.default_rng([7, 0]), 320, 180)
    b_img, b_polys = make_image(np.random.default_rng([7, 0]), 320, 180)
    assert np.array_equal(a_img, b_img) and len(a_polys) == len(b_polys) >= 2
    c_img, _ = make_image(np.random.default_rng([8, 0]), 320, 180)
    assert not np.array_equal(a_img, c_img)


def test_generator_converter_dataset_batch_round_trip(tmp_path):
    json_path = generate(tmp_path / "raw", num=9, seed=1, width=320, height=180)
    data = json.loads(json_path.read_text())
    assert (
        len(data["items"]) == 9
        and sorted((tmp_path / "raw" / "images").iterdir())[0].suffix == ".jpg"
    )
    root = tmp_path / "data"
    summary = convert(
        [json_path],
        ConvertOptions(
            images=tmp_path / "raw" / "images",
            out=root / "daodixian_seg",
            list_dir=root / "list" / "daodixian_seg",
        ),
    )
    assert summary.written == {"train": 7, "val": 2} and not summary.skipped
    val_lines = (root / "list" / "daodixian_seg" / "val.lst").read_text().split("\n")
    assert val_lines[0] == "val/images/synthetic_0000.jpg\tval/annotations/synthetic_0000.png"

    # Wire pixels are visibly different from their surroundings: the label lines up with the image.
    image = decode_image(root / "daodixian_seg" / "val" / "images" / "synthetic_0000.jpg").astype(
        float
    )
    label = decode_label(root / "daodixian_seg" / "val" / "annotations" / "synthetic_0000.png")
    assert 0.005 < label.mean() < 0.2
    blurred = cv2.blur(image, (15, 15))
    contrast = np.abs(image - blurred).mean(-1)
    assert contrast[label == 1].mean() > 2 * contrast[label == 0].mean()

    cfg = get_config(
        None,
        [
            "DATASET.ROOT",
            str(root),
            "DATASET.DATASET",
            "daodixian_seg",
            "DATASET.NUM_CLASSES",
            "2",
            "DATASET.TRAIN_SET",
            "list/daodixian_seg/train.lst",
            "DATASET.TEST_SET",
            "list/daodixian_seg/val.lst",
            "TRAIN.IMAGE_SIZE",
            "[128, 96]",
            "TRAIN.BASE_SIZE",
            "320",
            "TRAIN.IGNORE_LABEL",
            "255",
        ],
    )
    x, y, size, names = next(
        iter(torch.utils.data.DataLoader(build_dataset(cfg, "train"), batch_size=3))
    )
    assert x.shape == (3, 3, 96, 128) and y.shape == (3, 96, 128) and size.tolist()[0] == [180, 320]
    assert set(torch.unique(y).tolist()) <= {0, 1, 255}
    val = build_dataset(cfg, "val")
    assert (
        len(val) == 2
        and val[0][1].shape == (180, 320)
        and set(torch.unique(val[0][1]).tolist()) == {0, 1}
    )


def _generated_pairs(tmp_path, style: str, seed: int, make) -> tuple[list, list]:
    """12 photos of `style` through the platform JSON and the converter: (images as float
    arrays, label arrays), sorted alike; first checks that `make` is deterministic."""
    a, polys = make(np.random.default_rng([seed, 0]), 540, 360)
    b, _ = make(np.random.default_rng([seed, 0]), 540, 360)
    assert np.array_equal(a, b) and len(polys) >= 1
    json_path = generate(tmp_path / "raw", num=12, seed=seed, width=540, height=360, style=style)
    root = tmp_path / "data"
    convert([json_path], ConvertOptions(images=tmp_path / "raw" / "images",
                                        out=root / "daodixian_seg",
                                        list_dir=root / "list" / "daodixian_seg"))
    images = [decode_image(p).astype(float) for p in sorted((root / "daodixian_seg").rglob("*.jpg"))]
    labels = [decode_label(p) for p in sorted((root / "daodixian_seg").rglob("*.png"))]
    return images, labels


def test_real_style_is_thin_low_contrast_and_keeps_the_conventions(tmp_path):
    images, labels = _generated_pairs(tmp_path, "real", 2, make_real_image)
    fraction = np.mean([lab.mean() for lab in labels])
    assert 0.001 < fraction < 0.03  # thin wires: far fewer wire pixels than the demo style
    # every labelled wire pixel still sits on a drawn wire: the label follows the image
    image, label = images[0], labels[0]
    contrast = np.abs(image - cv2.blur(image, (9, 9))).mean(-1)
    assert contrast[label == 1].mean() > contrast[label == 0].mean()
    with np.testing.assert_raises(ValueError):
        generate(tmp_path / "x", num=1, style="photo")


def _assert_labels_on_wires(images, labels):
    """Labelled pixels sit on the drawn wires: a 15-px median erases thin lines, so they stand
    out from it; the same labels moved by 2 px down or up stand out less."""
    def on_wires(shift):
        ratios = []
        for image, label in zip(images, labels):
            grey = image.mean(-1)
            lines = np.abs(grey - cv2.medianBlur(grey.astype(np.uint8), 15))
            ratios.append(lines[np.roll(label, shift, axis=0) == 1].mean() / lines.mean())
        return np.median(ratios)

    assert on_wires(0) > 2.0 and on_wires(0) > on_wires(2) and on_wires(0) > on_wires(-2)


def _thin_dark_lines(image, label) -> float:
    """Share of the wire-free pixels on a thin dark line (a black top-hat of 5 px above 25)."""
    grey = image.mean(-1).astype(np.uint8)
    tophat = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, np.ones((5, 5), np.uint8))
    away = cv2.dilate(label.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    return float((tophat[away] > 25).mean())


def test_canopy_style_adds_thin_lines_that_are_not_wires(tmp_path):
    images, labels = _generated_pairs(tmp_path / "canopy", "canopy", 4, make_canopy_image)
    _assert_labels_on_wires(images, labels)
    assert 0.002 < np.mean([lab.mean() for lab in labels]) < 0.06
    aerial, aerial_labels = _generated_pairs(tmp_path / "aerial", "aerial", 4, make_aerial_image)
    canopy_lines = np.median([_thin_dark_lines(i, lab) for i, lab in zip(images, labels)])
    aerial_lines = np.median([_thin_dark_lines(i, lab) for i, lab in zip(aerial, aerial_labels)])
    assert canopy_lines > 1.5 * aerial_lines, (canopy_lines, aerial_lines)


def test_canopy_close_style_draws_a_share_of_close_up_round_cables(tmp_path):
    assert STYLES["canopy_close"] is make_canopy_close_image
    widths = np.array([_across(p) for seed in range(16)
                       for p in make_canopy_close_image(np.random.default_rng([seed, 0]), 540,
                                                        360)[1]])
    assert widths.min() >= 1.49 and widths.max() <= 16.01, widths
    assert 0.1 < (widths > 5.01).mean() < 0.5, widths  # about a quarter of the spans close up
    # its photos keep the canopy style's conventions: wires where the labels are
    images, labels = _generated_pairs(tmp_path, "canopy_close", 5, make_canopy_close_image)
    _assert_labels_on_wires(images, labels)
    # a close-up cable is shaded round: its centre line differs from its edges
    image, polygons = make_canopy_close_image(np.random.default_rng([2, 0]), 540, 360)
    shaded = []
    for polygon in polygons:
        if _across(polygon) < 8:
            continue
        n = len(polygon) // 2
        centre = _centre_line(polygon)
        for i in range(n):  # the centre and 80 % of the way to the edge, where in the photo
            (x0, y0), (x1, y1) = (np.floor(centre[i] + f * (polygon[i] - centre[i])).astype(int)
                                  for f in (0.0, 0.8))
            if 0 <= min(x0, x1) and max(x0, x1) < 540 and 0 <= min(y0, y1) and max(y0, y1) < 360:
                shaded.append(np.abs(image[y0, x0].astype(float) - image[y1, x1]).mean())
    assert shaded and np.median(shaded) > 10, np.median(shaded)


def test_aerial_style_is_deterministic_textured_and_keeps_the_conventions(tmp_path):
    images, labels = _generated_pairs(tmp_path, "aerial", 4, make_aerial_image)
    assert 0.002 < np.mean([lab.mean() for lab in labels]) < 0.06  # 1.5-5 px wires
    _assert_labels_on_wires(images, labels)
    # fine texture away from the wires in most photos (canopy, scrub, fields); sky is smooth
    grain = [np.abs(img - cv2.GaussianBlur(img, (0, 0), 2)).mean() for img in images]
    assert np.median(grain) > 2.0


def test_urban_style_is_registered_and_draws_photos_and_polygons_at_the_size_asked(tmp_path):
    assert STYLES["urban"] is make_urban_image
    for width, height in ((320, 240), (540, 360)):
        image, polygons = make_urban_image(np.random.default_rng([3, 0]), width, height)
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        assert 1 <= len(polygons) <= 6 and all(p.ndim == 2 and p.shape[1] == 2 for p in polygons)
    json_path = generate(tmp_path, num=2, seed=3, width=320, height=240, style="urban")
    assert [item["results"]["polys"] != [] for item in json.loads(json_path.read_text())["items"]] \
        == [True, True]


def _centre_line(polygon: np.ndarray) -> np.ndarray:
    """The centre line of a `wire_polygon` outline: the mean of its two sides, point by point."""
    n = len(polygon) // 2
    return (polygon[:n] + polygon[n:][::-1]) / 2


def _across(polygon: np.ndarray) -> float:
    """How wide the `wire_polygon` outline `polygon` is at its middle."""
    n = len(polygon) // 2
    return float(np.linalg.norm(polygon[n // 2] - polygon[-1 - n // 2]))


def test_urban_style_draws_thin_wires_and_close_up_wide_ones():
    widths = np.array([_across(p) for seed in range(12)
                       for p in make_urban_image(np.random.default_rng([seed, 0]), 540, 360)[1]])
    assert widths.min() >= 0.99 and widths.max() <= 30.01
    assert not ((widths > 4.01) & (widths < 7.99)).any()  # thin (1-4 px) or wide (8-30 px)
    assert 0.2 < (widths >= 8).mean() < 0.8, widths  # about half of them wide


def _long_straight_edges(image, label) -> int:
    """How many straight edges 80 px or longer lie away from the labelled wires (Canny, then a
    probabilistic Hough transform)."""
    edges = cv2.Canny(image.mean(-1).astype(np.uint8), 40, 120)
    edges[cv2.dilate(label.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0] = 0
    lines = cv2.HoughLinesP(edges, 1, np.pi / 180, 60, minLineLength=80, maxLineGap=2)
    return 0 if lines is None else len(lines)


def test_urban_style_adds_straight_clutter_that_is_not_labelled(tmp_path):
    images, labels = _generated_pairs(tmp_path / "urban", "urban", 5, make_urban_image)
    aerial, aerial_labels = _generated_pairs(tmp_path / "aerial", "aerial", 5, make_aerial_image)
    urban_edges = np.mean([_long_straight_edges(i, lab) for i, lab in zip(images, labels)])
    aerial_edges = np.mean([_long_straight_edges(i, lab) for i, lab in zip(aerial, aerial_labels)])
    assert urban_edges > 3 and urban_edges > 2 * aerial_edges, (urban_edges, aerial_edges)


def test_urban_wide_wire_is_labelled_as_a_filled_band(tmp_path):
    json_path = generate(tmp_path / "raw", num=4, seed=6, width=540, height=360, style="urban")
    root = tmp_path / "data"
    convert([json_path], ConvertOptions(images=tmp_path / "raw" / "images",
                                        out=root / "daodixian_seg",
                                        list_dir=root / "list" / "daodixian_seg"))
    inside = []
    for i in range(4):
        label = decode_label(next(root.rglob(f"synthetic_{i:04d}.png")))
        for polygon in make_urban_image(np.random.default_rng([6, i]), 540, 360)[1]:
            if _across(polygon) < 8:
                continue
            n = len(polygon) // 2
            centre = _centre_line(polygon)
            for f in (-0.5, 0.0, 0.5):  # the centre line and half-way to either edge
                x, y = np.floor(centre + f * (polygon[:n] - centre)).astype(int).T
                keep = (x >= 0) & (x < 540) & (y >= 0) & (y < 360)
                inside += label[y[keep], x[keep]].tolist()
    assert len(inside) > 100 and min(inside) == 1

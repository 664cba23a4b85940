"""Wire masks -> polygons -> platform JSON -> masks again (pre-annotation round trip)."""

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from lib.core.vectorize import (
    count_segments,
    platform_entry,
    region_polygons,
    write_preannotations,
)
from lib.datasets.annotations import parse_file, rasterise
from lib.datasets.decode import decode_label
from lib.datasets.synthetic import generate
from tools_jss import json2lableImg_jss

CLASSES = {"background": 0, "wire": 1}


def _iou(a, b):
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return (a & b).sum() / max((a | b).sum(), 1)


def _read_back(json_path, width, height):
    result = parse_file(json_path)
    assert not result.errors
    return [rasterise(ann, width, height, CLASSES) for ann in result.annotations]


def test_regions_with_holes_are_cut_and_drawn_back(tmp_path):
    mask = np.zeros((120, 200), np.uint8)
    cv2.circle(mask, (60, 60), 30, 1, 4)  # a loop around background
    cv2.line(mask, (0, 20), (199, 100), 1, 3)  # crossing it twice: more holes
    cv2.line(mask, (10, 110), (190, 112), 1, 1)  # a one-pixel wire
    polygons = region_polygons(mask, min_area=4)
    assert all(len(p) >= 3 for p in polygons)
    path = write_preannotations(tmp_path / "pre.json", [platform_entry("x/a.jpg", mask)])
    (back,) = _read_back(path, 200, 120)
    assert back[60, 60] == 0  # the hole stays background
    assert _iou(back, mask) > 0.9
    assert count_segments(mask, min_area=4) == 2


def test_empty_prediction_is_an_item_without_results(tmp_path):
    path = write_preannotations(
        tmp_path / "pre.json", [platform_entry("a.jpg", np.zeros((10, 10), np.uint8))]
    )
    result = parse_file(path)
    assert result.unannotated == ["a.jpg"] and not result.annotations


def test_preannotation_json_round_trip_through_the_converter(tmp_path):
    """Masks (here the generated labels stand in for predictions) -> our JSON ->
    json2lableImg_jss.py -> label PNGs that agree with the masks (IoU > 0.9)."""
    raw = tmp_path / "raw"
    generate(raw, num=3, seed=3, width=480, height=270)
    masks = {}
    for ann in parse_file(raw / "annotations.json").annotations:
        name = ann.image.rsplit("/", 1)[-1]
        masks[name] = rasterise(ann, 480, 270, CLASSES)
    entries = [platform_entry(f"bucket/{name}", m) for name, m in sorted(masks.items())]
    pre = write_preannotations(tmp_path / "pre.json", entries)
    out = tmp_path / "ds"
    rc = json2lableImg_jss.main(
        [
            "--input",
            str(pre),
            "--images",
            str(raw / "images"),
            "--out",
            str(out),
            "--list-dir",
            str(tmp_path / "lists"),
            "--val-every",
            "0",
        ]
    )
    assert rc == 0
    for name, mask in masks.items():
        back = decode_label(out / "train" / "annotations" / (name.rsplit(".", 1)[0] + ".png"))
        assert _iou(back, mask) > 0.9, name
        assert mask.sum() > 0


@pytest.mark.parametrize("tolerance", [0.0, 0.3])
def test_simplification_keeps_thin_wires(tolerance):
    mask = np.zeros((60, 300), np.uint8)
    pts = np.stack([np.arange(300), 30 + 10 * np.sin(np.arange(300) / 40)], 1).astype(np.int32)
    cv2.polylines(mask, [pts], False, 1, 3)
    polys = region_polygons(mask, tolerance=tolerance)
    img = Image.fromarray(np.zeros_like(mask))
    draw = ImageDraw.Draw(img)
    for p in polys:
        draw.polygon([tuple(v) for v in p], fill=1, outline=1)
    assert _iou(np.asarray(img), mask) > (0.999 if tolerance == 0 else 0.95)

"""The three JSON formats, clamping/scaling, bad items, and the platform writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lib.datasets.annotations import (
    AnnotationError,
    clip_polygon,
    mask_to_polygons,
    parse_file,
    rasterise,
    write_platform_json,
)

DATA = Path(__file__).parent / "data"
WIRE = {"background": 0, "wire": 1}


def test_platform_polygon_scaled_by_image_size_and_filled_with_class_id():
    result = parse_file(DATA / "platform.json")
    square = rasterise(result.annotations[0], 8, 4, WIRE)
    expected = np.zeros((4, 8), np.uint8)
    expected[1:4, 2:7] = (
        1  # x 0.25..0.75 of 8 -> 2..6, y 0.25..0.75 of 4 -> 1..3 (outline included)
    )
    np.testing.assert_array_equal(square, expected)


def test_platform_points_outside_unit_square_are_clamped():
    result = parse_file(DATA / "platform.json")
    np.testing.assert_array_equal(
        rasterise(result.annotations[1], 5, 3, WIRE), np.ones((3, 5), np.uint8)
    )


def test_platform_items_without_results_are_counted_and_bad_items_named():
    result = parse_file(DATA / "platform.json")
    assert [a.image for a in result.annotations] == ["bucket/a.png", "bucket/b.png", "bucket/h.png"]
    assert result.unannotated == ["bucket/c.png", "bucket/d.png"]
    messages = [str(e) for e in result.errors]
    assert "item 4 (e.png) poly 0: polygon with 2 points" in messages[0]
    assert "item 5 (f.png)" in messages[1] and "NaN" in messages[1]
    assert "item 6 (g.png)" in messages[2] and "non-numeric" in messages[2]
    assert all("platform.json" in m for m in messages)


def test_labelme_rectangle_line_width_and_label_ids():
    ann = parse_file(DATA / "labelme.json").annotations[0]
    label = rasterise(ann, 20, 10, {"wire": 1, "tower": 2}, line_width=3)
    assert (label[1:3, 1:4] == 1).all() and label[0, 1] == 0  # rectangle (1,1)-(3,2)
    assert (
        (label[6:9, :] == 1).all() and (label[5] != 1).all() and (label[9] == 0).all()
    )  # 3 px line at y=7
    assert (label[0:5, 10:15] == 2).all()
    assert label.sum() == 6 * 1 + 60 * 1 + 25 * 2


def test_labelme_unknown_label_is_an_error_or_skipped():
    ann = parse_file(DATA / "labelme.json").annotations[0]
    with pytest.raises(AnnotationError, match=r"labelme.json.*unknown label 'tower'"):
        rasterise(ann, 20, 10, WIRE)
    label = rasterise(ann, 20, 10, WIRE, ignore_unknown=True)
    assert set(np.unique(label)) == {0, 1} and label[2, 12] == 0


def test_declared_size_must_match_image():
    ann = parse_file(DATA / "labelme.json").annotations[0]
    with pytest.raises(AnnotationError, match="declares 20x10 but the image is 21x10"):
        rasterise(ann, 21, 10, {"wire": 1, "tower": 2})


def test_cityscapes_polygons_give_official_label_ids():
    ann = parse_file(DATA / "aachen_000000_000019_gtFine_polygons.json").annotations[0]
    assert ann.image == "aachen_000000_000019_leftImg8bit.png"
    label = rasterise(ann, 16, 8, {})
    assert label[0, 0] == 0  # deleted sky object not drawn, background "unlabeled" (0)
    assert (label[0:3, 8:12] == 11).all()  # building
    assert label[4, 0] == 7 and label[7, 15] == 7  # road
    assert (label[5:7, 2:6] == 26).all()  # "cargroup" -> car; license plate (id -1) skipped


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("{not json", "malformed JSON at line 1"),
        ('{"foo": 1}', "not a platform, labelme or cityscapes"),
    ],
)
def test_bad_files_are_named(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message) as info:
        parse_file(path)
    assert str(path) in str(info.value)


def test_writer_round_trips_through_parser(tmp_path):
    square = np.array([[2.0, 1.0], [6.0, 1.0], [6.0, 3.0], [2.0, 3.0]])
    write_platform_json(
        tmp_path / "out.json",
        [
            {"uri": "b/x.jpg", "width": 8, "height": 4, "polygons": [square]},
            {"uri": "b/y.jpg", "width": 8, "height": 4, "polygons": []},
        ],
    )
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["items"][0]["results"]["polys"][0]["poly"][0] == [0.25, 0.25]
    result = parse_file(tmp_path / "out.json")
    assert result.unannotated == ["b/y.jpg"]
    label = rasterise(result.annotations[0], 8, 4, WIRE)
    assert (label[1:4, 2:7] == 1).all() and label.sum() == 15


def test_clip_polygon_to_image_box():
    clipped = clip_polygon(np.array([[-2.0, 1.0], [4.0, 1.0], [4.0, 3.0], [-2.0, 3.0]]), 10, 10)
    assert clipped[:, 0].min() == 0.0 and clipped[:, 0].max() == 4.0
    assert len(clip_polygon(np.array([[-5.0, -5.0], [-1.0, -5.0], [-1.0, -1.0]]), 10, 10)) == 0


def test_mask_to_polygons_recovers_regions():
    mask = np.zeros((20, 30), np.uint8)
    mask[2:8, 3:20] = 1
    mask[15, 15] = 1  # below min_area
    polygons = mask_to_polygons(mask, min_area=4)
    assert len(polygons) == 1
    assert polygons[0][:, 0].min() == 3 and polygons[0][:, 0].max() == 19


def test_platform_pixel_coordinates_are_detected_per_item(tmp_path):
    path = tmp_path / "pixels.json"
    pixels = [[2, 1], [6, 1], [6, 3], [2, 3]]
    path.write_text(
        json.dumps(
            {
                "items": [
                    {
                        "uris": ["b/n.png"],
                        "results": {
                            "polys": [{"poly": [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75]]}]
                        },
                    },
                    {"uris": ["b/p.png"], "results": {"polys": [{"poly": pixels}]}},
                    {"uris": ["b/q.png"], "results": {"polys": [{"poly": pixels}]}},
                ]
            }
        )
    )
    result = parse_file(path)
    assert [a.normalised for a in result.annotations] == [True, False, False]
    assert len(result.warnings) == 1 and "\n" not in result.warnings[0]
    assert f"{path}: items 1 (p.png), 2 (q.png)" in result.warnings[0]
    assert "read as pixels" in result.warnings[0]
    label = rasterise(result.annotations[1], 8, 4, WIRE)
    assert (label[1:4, 2:7] == 1).all() and label.sum() == 15


def test_platform_overshoot_of_normalised_coordinates_is_named_in_a_warning():
    result = parse_file(DATA / "platform.json")  # item 1 goes from -0.5 to 1.5
    assert result.annotations[1].normalised
    assert len(result.warnings) == 1 and "item 1 (b.png) has a shape reaching beyond the " \
        "image" in result.warnings[0] and "platform.json" in result.warnings[0]


def test_a_polygon_mostly_outside_is_drawn_as_far_as_it_is_inside(tmp_path):
    """Moving the vertices to the border would change the shape (here: cut the triangle's
    long side short); the drawing clips it instead."""
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"items": [{"uris": ["b/t.png"], "results": {"polys": [
        {"poly": [[0.2, 0.2], [2.0, 0.2], [0.2, 1.0]]}]}}]}))
    result = parse_file(path)
    label = rasterise(result.annotations[0], 100, 100, WIRE)
    assert label[70, 80] == 1  # inside the triangle: its long side crosses y=70 at x=87.5
    assert label[95, 80] == 0 and label[10, 50] == 0
    assert "item 0 (t.png) has a shape reaching beyond the image" in result.warnings[0]


@pytest.mark.parametrize(
    "item, message",
    [
        ("text", "item 0: item must be an object"),
        ({"uris": "b/x.png"}, "item 0: 'uris' must be a non-empty list of strings"),
        ({"uris": ["b/x.png"], "results": [1]}, "item 0 (x.png): 'results' must be an object"),
        ({"uris": ["b/x.png"], "results": {"polys": {}}}, "item 0 (x.png): 'polys' must be a list"),
        (
            {
                "uris": ["b/x.png"],
                "results": {"polys": [{"poly": [[0, 0], [1, 0], [1, 1]], "label": 3}]},
            },
            "item 0 (x.png) poly 0: 'label' must be a string",
        ),
    ],
)
def test_platform_item_with_unexpected_structure_is_one_error(tmp_path, item, message):
    path = tmp_path / "odd.json"
    good = {"uris": ["b/a.png"], "results": {"polys": [{"poly": [[0, 0], [1, 0], [1, 1]]}]}}
    path.write_text(json.dumps({"items": [item, good]}))
    result = parse_file(path)
    assert [a.image for a in result.annotations] == ["b/a.png"]
    assert len(result.errors) == 1 and str(result.errors[0]).startswith(f"{path} {message}")

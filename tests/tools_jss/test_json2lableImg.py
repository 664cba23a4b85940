"""The label converter CLI: layout, split, list format, encodings, bad input and exit status."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib.datasets.daodixian import PowerLineDataset

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "datasets" / "data"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools_jss" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


converter = _load("json2lableImg_jss")


def _photos(folder, names, w=8, h=4):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(folder / name)


def _run(tmp_path, *extra):
    return converter.main(
        [
            "--input",
            str(DATA / "platform.json"),
            "--images",
            str(tmp_path / "photos"),
            "--out",
            str(tmp_path / "out" / "ds"),
            "--list-dir",
            str(tmp_path / "lists"),
            *extra,
        ]
    )


def test_platform_export_to_layout_lists_and_exit_status(tmp_path, capsys):
    _photos(
        tmp_path / "photos", ["a.png", "b.png", "c.png", "e.png", "f.png", "g.png"]
    )  # h.png missing
    assert _run(tmp_path, "--val-every", "2") == 1  # items were skipped
    out = capsys.readouterr().out
    assert "images written: train: 1, val: 1; skipped: 4; without annotations: 2" in out
    assert "item 7 (h.png): image h.png not found" in out and "item 4 (e.png) poly 0" in out
    # sorted annotated names a, b, h: index 0 (a) and 2 (h) go to val; h is missing.
    assert (
        tmp_path / "lists" / "val.lst"
    ).read_text() == "val/images/a.png\tval/annotations/a.png\n"
    assert (
        tmp_path / "lists" / "train.lst"
    ).read_text() == "train/images/b.png\ttrain/annotations/b.png\n"
    label = np.asarray(Image.open(tmp_path / "out" / "ds" / "val" / "annotations" / "a.png"))
    assert label.shape == (4, 8) and label[2, 4] == 1 and label[0, 0] == 0
    assert (tmp_path / "out" / "ds" / "val" / "images" / "a.png").is_file()


def test_split_is_every_nth_by_name_and_reproducible(tmp_path):
    _photos(tmp_path / "photos", ["a.png", "b.png", "h.png"])
    assert _run(tmp_path) == 1
    first = [(tmp_path / "lists" / f"{s}.lst").read_text() for s in ("train", "val")]
    shutil.rmtree(tmp_path / "out")
    _run(tmp_path)
    assert [(tmp_path / "lists" / f"{s}.lst").read_text() for s in ("train", "val")] == first
    assert first[1].startswith("val/images/a.png")  # the 1st, 9th, ... image by name is val


def test_strict_stops_at_first_bad_item(tmp_path, capsys):
    _photos(tmp_path / "photos", ["a.png", "b.png", "h.png"])
    assert _run(tmp_path, "--strict") == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "lists").exists()


def test_color_encoding_writes_palette_png_of_ids(tmp_path):
    _photos(tmp_path / "photos", ["a.png", "b.png", "h.png"])
    _run(tmp_path, "--encoding", "color", "--unlabeled-name", "test")
    image = Image.open(tmp_path / "out" / "ds" / "val" / "annotations" / "a.png")
    assert image.mode == "P" and np.asarray(image)[2, 4] == 1
    assert image.getpalette()[3:6] == [255, 0, 0]


def test_images_without_results_can_go_to_an_image_only_list(tmp_path):
    _photos(tmp_path / "photos", ["a.png", "b.png", "c.png", "d.png", "h.png"])
    _run(tmp_path, "--unlabeled-name", "test")
    assert (tmp_path / "lists" / "test.lst").read_text() == "test/images/c.png\ntest/images/d.png\n"


def test_labelme_folder_with_classes_file_and_line_width(tmp_path):
    (tmp_path / "json").mkdir()
    shutil.copy(DATA / "labelme.json", tmp_path / "json" / "lm.json")
    _photos(tmp_path / "json", ["lm.png"], w=20, h=10)
    (tmp_path / "classes.txt").write_text("background=0\nwire=1\ntower=2\n")
    code = converter.main(
        [
            "--input",
            str(tmp_path / "json"),
            "--images",
            str(tmp_path / "json"),
            "--out",
            str(tmp_path / "out" / "ds"),
            "--list-dir",
            str(tmp_path / "lists"),
            "--classes",
            str(tmp_path / "classes.txt"),
            "--line-width",
            "1",
            "--val-every",
            "0",
        ]
    )
    assert code == 0
    label = np.asarray(Image.open(tmp_path / "out" / "ds" / "train" / "annotations" / "lm.png"))
    assert (label[7] == 1).all() and (label[6] == 0).all() and label[2, 12] == 2


def test_cityscapes_polygons_and_unknown_label_handling(tmp_path, capsys):
    src = tmp_path / "json" / "aachen_000000_000019_gtFine_polygons.json"
    src.parent.mkdir()
    shutil.copy(DATA / src.name, src)
    _photos(tmp_path / "photos", ["aachen_000000_000019_leftImg8bit.png"], w=16, h=8)
    args = [
        "--input",
        str(src),
        "--images",
        str(tmp_path / "photos"),
        "--out",
        str(tmp_path / "out" / "cs"),
        "--list-dir",
        str(tmp_path / "lists"),
        "--format",
        "cityscapes",
    ]
    assert converter.main(args) == 0
    label = np.asarray(
        Image.open(
            tmp_path / "out" / "cs" / "val" / "annotations" / "aachen_000000_000019_leftImg8bit.png"
        )
    )
    assert label[4, 0] == 7 and label[5, 3] == 26
    lm = tmp_path / "lm.json"
    shutil.copy(DATA / "labelme.json", lm)
    _photos(tmp_path / "photos", ["lm.png"], w=20, h=10)
    assert (
        converter.main(
            [
                "--input",
                str(lm),
                "--images",
                str(tmp_path / "photos"),
                "--out",
                str(tmp_path / "o2"),
                "--list-dir",
                str(tmp_path / "l2"),
            ]
        )
        == 2  # its one image skipped: nothing written
    )
    assert "unknown label 'tower'" in capsys.readouterr().out


@pytest.mark.parametrize("classes", ["wire", "wire=x", "wire=300", ""])
def test_bad_class_mapping_is_an_error(tmp_path, classes, capsys):
    _photos(tmp_path / "photos", ["a.png"])
    assert _run(tmp_path, "--classes", classes) == 2
    assert "error:" in capsys.readouterr().err


def test_missing_input_is_an_error(tmp_path, capsys):
    _photos(tmp_path / "photos", ["a.png"])
    assert (
        converter.main(
            [
                "--input",
                str(tmp_path / "nope.json"),
                "--images",
                str(tmp_path / "photos"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "nope.json: no such file" in capsys.readouterr().err


def _platform(path, items):
    path.write_text(json.dumps({"items": items}), encoding="utf-8")
    return path


def _convert(tmp_path, source, *extra):
    return converter.main(
        [
            "--input",
            str(source),
            "--images",
            str(tmp_path / "photos"),
            "--out",
            str(tmp_path / "out" / "ds"),
            "--list-dir",
            str(tmp_path / "lists"),
            *extra,
        ]
    )


SQUARE = [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]


def test_photo_names_with_spaces_work_from_converter_to_dataset(tmp_path):
    names = ["DJI 0001.png", "DJI 0002.png", "DJI  0003 b.png"]
    _photos(tmp_path / "photos", names)
    items = [{"uris": [f"bucket/{n}"], "results": {"polys": [{"poly": SQUARE}]}} for n in names]
    items.append({"uris": ["bucket/DJI 0004.png"], "results": {}})
    _photos(tmp_path / "photos", ["DJI 0004.png"])
    source = _platform(tmp_path / "spaces.json", items)
    assert _convert(tmp_path, source, "--val-every", "2", "--unlabeled-name", "test") == 0
    train = (tmp_path / "lists" / "train.lst").read_text(encoding="utf-8")
    assert train == "train/images/DJI 0001.png\ttrain/annotations/DJI 0001.png\n"
    for split, count, labelled in (("train", 1, True), ("val", 2, True), ("test", 1, False)):
        ds = PowerLineDataset(
            tmp_path / "out" / "ds", tmp_path / "lists" / f"{split}.lst", num_classes=2
        )
        assert len(ds) == count and ds.has_labels is labelled
        image, label, size, name = ds[0]
        assert name.startswith("DJI ") and tuple(size) == (4, 8)
        if labelled:
            assert label[2, 4] == 1 and label[0, 0] == 0
    val = PowerLineDataset(tmp_path / "out" / "ds", tmp_path / "lists" / "val.lst", num_classes=2)
    assert [item["name"] for item in val.items] == ["DJI  0003 b", "DJI 0002"]
    train = PowerLineDataset(
        tmp_path / "out" / "ds",
        tmp_path / "lists" / "train.lst",
        num_classes=2,
        augment=True,
        crop_size=(8, 4),
        base_size=8,
    )
    image, label, _, _ = train[0]  # what the trainer reads
    assert image.shape == (3, 4, 8) and label.shape == (4, 8)


def test_photo_name_with_a_tab_is_skipped_in_one_line(tmp_path, capsys):
    _photos(tmp_path / "photos", ["a.png", "t\tb.png"])
    items = [
        {"uris": [f"bucket/{n}"], "results": {"polys": [{"poly": SQUARE}]}}
        for n in ("a.png", "t\tb.png")
    ]
    source = _platform(tmp_path / "tab.json", items)
    assert _convert(tmp_path, source, "--val-every", "0") == 1
    skipped = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("  skipped: ")
    ]
    assert len(skipped) == 1 and "tab.json item 1" in skipped[0]
    assert "cannot be written to a list file" in skipped[0]
    assert (
        tmp_path / "lists" / "train.lst"
    ).read_text() == "train/images/a.png\ttrain/annotations/a.png\n"


def test_platform_pixel_coordinates_are_read_as_pixels_with_a_warning(tmp_path, caplog):
    _photos(tmp_path / "photos", ["p.png", "n.png"])
    source = _platform(
        tmp_path / "pixels.json",
        [
            {"uris": ["bucket/n.png"], "results": {"polys": [{"poly": SQUARE}]}},
            {
                "uris": ["bucket/p.png"],
                "results": {"polys": [{"poly": [[2, 1], [6, 1], [6, 3], [2, 3]]}]},
            },
        ],
    )
    with caplog.at_level(logging.WARNING):
        assert _convert(tmp_path, source, "--val-every", "0") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "pixels.json" in warnings[0] and "item 1 (p.png)" in warnings[0]
    assert "pixel" in warnings[0]
    annotations = tmp_path / "out" / "ds" / "train" / "annotations"
    for name in ("p", "n"):
        label = np.asarray(Image.open(annotations / f"{name}.png"))
        assert (label[1:4, 2:7] == 1).all() and label.sum() == 15, name


def test_item_with_unexpected_structure_is_skipped_not_the_file(tmp_path, capsys):
    _photos(tmp_path / "photos", ["a.png", "b.png", "c.png"])
    source = _platform(
        tmp_path / "odd.json",
        [
            {"uris": ["bucket/a.png"], "results": {"polys": [{"poly": SQUARE}]}},
            {"uris": ["bucket/b.png"], "results": [{"poly": SQUARE}]},
            {"uris": ["bucket/c.png"], "results": {"polys": [{"poly": SQUARE}]}},
            {"uris": ["bucket/d.png"], "results": {"polys": {"poly": SQUARE}}},
            "not an item",
        ],
    )
    assert _convert(tmp_path, source, "--val-every", "0") == 1
    out = capsys.readouterr().out
    assert "images written: train: 2; skipped: 3" in out
    skipped = [line for line in out.splitlines() if "skipped:" in line and "odd.json" in line]
    assert len(skipped) == 3
    assert "odd.json item 1 (b.png): 'results'" in out
    assert "odd.json item 3 (d.png): 'polys'" in out and "odd.json item 4:" in out
    assert (tmp_path / "lists" / "train.lst").read_text().count("\n") == 2


def test_reconverting_without_val_removes_the_stale_val_list(tmp_path, capsys):
    _photos(tmp_path / "photos", ["a.png", "b.png", "h.png"])
    _run(tmp_path, "--val-every", "2")
    assert (tmp_path / "lists" / "val.lst").is_file()
    capsys.readouterr()
    _run(tmp_path, "--val-every", "0")
    assert not (tmp_path / "lists" / "val.lst").exists()
    out = capsys.readouterr().out
    assert f"removed {tmp_path / 'lists' / 'val.lst'}" in out
    assert (tmp_path / "lists" / "train.lst").read_text().count("\n") == 3
    (tmp_path / "none").mkdir()  # nothing converted: the earlier lists stay as they were
    assert _run(tmp_path, "--val-every", "0", "--images", str(tmp_path / "none")) == 2
    assert "no image was written" in capsys.readouterr().err
    assert (tmp_path / "lists" / "train.lst").read_text().count("\n") == 3
    empty = tmp_path / "empty.json"
    empty.write_text("[]")  # an export with no photo in it
    assert converter.main(["--input", str(empty), "--images", str(tmp_path / "none"),
                           "--out", str(tmp_path / "o3"), "--list-dir", str(tmp_path / "l3")]) == 2

"""The label converter CLI: layout, split, list format, encodings, bad input and exit status."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
    ).read_text() == "val/images/a.png val/annotations/a.png\n"
    assert (
        tmp_path / "lists" / "train.lst"
    ).read_text() == "train/images/b.png train/annotations/b.png\n"
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
        == 1
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

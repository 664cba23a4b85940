"""List generator, class weights, overlay tool and prediction writers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from lib.datasets.overlay import overlay, region_boxes
from lib.datasets.palette import cityscapes_submission_values, save_id_png, save_palette_png
from lib.datasets.stats import class_weights

REPO = Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools_jss" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_make_lists_pairs_by_stem_and_reports_unmatched(tmp_path, capsys):
    for name in ("a", "b"):
        _png(tmp_path / "ds" / "train" / "images" / f"{name}.png", np.zeros((2, 2, 3), np.uint8))
    _png(tmp_path / "ds" / "train" / "annotations" / "a.png", np.zeros((2, 2), np.uint8))
    code = _load("make_lists").main(
        [
            "--root",
            str(tmp_path / "ds"),
            "--images",
            "train/images",
            "--labels",
            "train/annotations",
            "--out",
            str(tmp_path / "l.lst"),
        ]
    )
    assert code == 1 and "no label: train/images/b.png" in capsys.readouterr().out
    assert (tmp_path / "l.lst").read_text() == "train/images/a.png\ttrain/annotations/a.png\n"


def test_make_lists_cityscapes_layout(tmp_path):
    root = tmp_path / "cityscapes"
    _png(
        root / "leftImg8bit" / "val" / "aachen" / "aachen_1_leftImg8bit.png",
        np.zeros((2, 2, 3), np.uint8),
    )
    _png(
        root / "gtFine" / "val" / "aachen" / "aachen_1_gtFine_labelIds.png",
        np.zeros((2, 2), np.uint8),
    )
    assert (
        _load("make_lists").main(
            ["--root", str(root), "--cityscapes", "val", "--out", str(tmp_path / "v.lst")]
        )
        == 0
    )
    assert (tmp_path / "v.lst").read_text() == (
        "leftImg8bit/val/aachen/aachen_1_leftImg8bit.png\tgtFine/val/aachen/aachen_1_gtFine_labelIds.png\n"
    )


def test_class_weight_recipes():
    np.testing.assert_allclose(class_weights([900, 100], "inverse"), [0.2, 1.8])
    np.testing.assert_allclose(
        class_weights([900, 100], "sqrt"),
        np.array([1 / 0.9**0.5, 1 / 0.1**0.5]) / ((1 / 0.9**0.5 + 1 / 0.1**0.5) / 2),  # [0.5, 1.5]
    )
    assert class_weights([900, 100, 0], "median")[2] == 0


def test_class_weights_tool_reads_the_training_labels(tmp_path, capsys):
    _png(tmp_path / "daodixian_seg" / "i.png", np.zeros((4, 4, 3), np.uint8))
    label = np.zeros((4, 4), np.uint8)
    label[0, :] = 255  # a seed-style mask: 255 is wire
    _png(tmp_path / "daodixian_seg" / "l.png", label)
    (tmp_path / "t.lst").write_text("i.png l.png\n")
    code = _load("class_weights").main(
        [
            "--cfg",
            "",
            "--method",
            "inverse",
            "DATASET.ROOT",
            str(tmp_path),
            "DATASET.DATASET",
            "daodixian_seg",
            "DATASET.NUM_CLASSES",
            "2",
            "DATASET.TRAIN_SET",
            "t.lst",
            "TRAIN.IGNORE_LABEL",
            "255",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "class 1: 4 pixels (25.000%)" in out
    assert "DATASET.CLASS_WEIGHTS: [0.5000, 1.5000]" in out  # 1/f scaled to mean 1


def test_region_boxes_and_overlay():
    ids = np.zeros((20, 30), np.uint8)
    ids[2:5, 3:25] = 1
    ids[15, 15] = 1
    assert region_boxes(ids, (1,), min_area=10) == [(1, 3, 2, 22, 3)]
    image = np.full((20, 30, 3), 100, np.uint8)
    out = overlay(image, ids, [(0, 0, 0), (255, 0, 0)], alpha=0.5, boxes=[])
    assert out[0, 0].tolist() == [100, 100, 100] and out[3, 10].tolist() == [177, 50, 50]


def test_overlay_blends_every_marked_pixel_and_no_other():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    ids = rng.integers(0, 5, (40, 50)).astype(np.uint8)  # classes 3 and 4 are not in the palette
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    out = overlay(image, ids, palette, alpha=0.3)
    for cls in range(5):
        at = ids == cls
        if cls in (1, 2):
            want = (0.3 * np.asarray(palette[cls]) + 0.7 * image[at]).astype(np.uint8)
            assert np.array_equal(out[at], want), cls
        else:
            assert np.array_equal(out[at], image[at]), cls
    assert np.array_equal(overlay(image, np.zeros_like(ids), palette), image)


def test_visualize_tool_writes_overlays(tmp_path):
    _png(tmp_path / "img" / "a.png", np.full((8, 8, 3), 90, np.uint8))
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    _png(tmp_path / "pred" / "a.png", mask)
    code = _load("visualize").main(
        [
            "--images",
            str(tmp_path / "img"),
            "--labels",
            str(tmp_path / "pred"),
            "--out",
            str(tmp_path / "vis"),
            "--min-area",
            "4",
        ]
    )
    assert code == 0 and (tmp_path / "vis" / "a.jpg").is_file()


def test_prediction_writers(tmp_path):
    pred = np.array([[0, 1], [1, 0]], np.uint8)
    save_id_png(pred, tmp_path / "wire.png", (0, 255))
    assert np.asarray(Image.open(tmp_path / "wire.png")).tolist() == [[0, 255], [255, 0]]
    save_palette_png(pred, tmp_path / "pal.png", [(0, 0, 0), (255, 0, 0)])
    assert Image.open(tmp_path / "pal.png").mode == "P"
    save_id_png(np.array([[0, 18]], np.uint8), tmp_path / "cs.png", cityscapes_submission_values())
    assert np.asarray(Image.open(tmp_path / "cs.png")).tolist() == [
        [7, 33]
    ]  # road, bicycle label ids


def test_make_lists_refuses_two_photos_that_one_label_would_serve(tmp_path, capsys):
    from tools_jss import make_lists

    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "lab").mkdir()
    for name in ("a.jpg", "a.png", "b.jpg"):
        (root / "img" / name).write_bytes(b"x")
    for name in ("a.png", "b.png"):
        (root / "lab" / name).write_bytes(b"x")
    out = tmp_path / "l.lst"
    argv = ["--root", str(root), "--images", "img", "--labels", "lab", "--out", str(out)]
    assert make_lists.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.jpg and a.png share the name 'a'" in err[0]
    assert not out.exists()


def test_visualize_names_a_missing_folder(tmp_path, capsys):
    from tools_jss import visualize

    (tmp_path / "lab").mkdir()
    argv = ["--images", str(tmp_path / "photos"), "--labels", str(tmp_path / "lab"),
            "--out", str(tmp_path / "out")]
    assert visualize.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --images {tmp_path / 'photos'}: no such folder"]

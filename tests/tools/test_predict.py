"""tools/predict.py on photo folders: native-size photos, corrupt files, resume, labels."""

import csv
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lib.config import get_config
from lib.core import prediction
from lib.core.prediction import list_photos, read_label
from lib.datasets.annotations import parse_file
from lib.datasets.synthetic import make_image
from lib.models import get_seg_model
from tests.tools.conftest import DEMO_CFG, REPO
from tools import predict

# The demo model on 2048x2048 native tiles seen at 1/16 (128x128 network input): seconds for
# a 5472x3078 photo on 2 CPU cores. TILE_SCALE 1 is the real setting (the slow test).
FAST = ["TEST.TILE_SIZE", "[2048, 2048]", "TEST.TILE_OVERLAP", "512", "TEST.TILE_SCALE", "0.0625"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = get_seg_model(get_config(DEMO_CFG))
    path = tmp_path_factory.mktemp("model") / "model.pth"
    torch.save(model.state_dict(), path)
    return path


def _write_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _run(weights, inputs, out, *extra, opts=()):
    argv = [
        "--cfg",
        str(DEMO_CFG),
        "--input",
        *map(str, inputs),
        "--output",
        str(out),
        "--device",
        "cpu",
        *extra,
        "TEST.MODEL_FILE",
        str(weights),
        *FAST,
        *opts,
    ]
    return predict.main(argv)


def _native_photo():
    """A generated 5472x3078 photo (drawn at 960x540 and enlarged: generating it natively
    takes seconds)."""
    rgb, _ = make_image(np.random.default_rng(0), 960, 540)
    return cv2.resize(rgb, (5472, 3078), interpolation=cv2.INTER_LINEAR)


def test_folder_with_a_corrupt_file_and_a_native_size_photo_then_resume(weights, tmp_path, capsys):
    photos = tmp_path / "photos"
    _write_rgb(photos / "flight1" / "DJI_0001.JPG", _native_photo())
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated, not a JPEG")
    out = tmp_path / "out"

    assert _run(weights, [photos], out) == 1  # one photo skipped
    text = capsys.readouterr().out
    assert "predicted 1, already done 0, skipped 1" in text and "broken.jpg" in text
    mask = cv2.imread(str(out / "masks" / "flight1" / "DJI_0001.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (3078, 5472) and set(np.unique(mask)) <= {0, 1}
    assert cv2.imread(str(out / "overlays" / "flight1" / "DJI_0001.jpg")).shape == (3078, 5472, 3)
    summary = json.loads((out / "summaries" / "flight1" / "DJI_0001.json").read_text())
    assert summary["width"] == 5472 and summary["height"] == 3078
    assert summary["wire_fraction"] == pytest.approx(float((mask == 1).mean()))
    assert summary["segments"] >= 0
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["photo"] for r in rows] == ["flight1/DJI_0001.JPG"]
    assert not parse_file(out / "preannotations.json").errors

    stamp = (out / "masks" / "flight1" / "DJI_0001.png").stat().st_mtime_ns
    assert _run(weights, [photos], out) == 1  # resume: only the broken file is left, and fails
    assert "predicted 0, already done 1, skipped 1" in capsys.readouterr().out
    assert (out / "masks" / "flight1" / "DJI_0001.png").stat().st_mtime_ns == stamp
    listing = tmp_path / "todo.txt"
    listing.write_text("photos/flight1/DJI_0001.JPG\n")
    assert list_photos([listing]) == [(photos / "flight1" / "DJI_0001.JPG", "DJI_0001.JPG")]


def test_labels_are_scored_and_overwrite_predicts_again(weights, tmp_path, capsys):
    rng = np.random.default_rng(1)
    photos, labels = tmp_path / "photos", tmp_path / "labels"
    for name in ("a", "b"):
        rgb, polygons = make_image(rng, 320, 180)
        _write_rgb(photos / f"{name}.jpg", rgb)
        label = np.zeros((180, 320), np.uint8)
        cv2.fillPoly(label, [np.round(p).astype(np.int32) for p in polygons], 255)  # seed style
        labels.mkdir(exist_ok=True)
        cv2.imwrite(str(labels / f"{name}.png"), label)
    out = tmp_path / "out"
    opts = ["TEST.TILE_SIZE", "[512, 512]", "TEST.TILE_SCALE", "1.0"]  # one tile per photo
    assert _run(weights, [photos], out, "--labels", str(labels), opts=opts) == 0
    assert "wire precision" in capsys.readouterr().out
    summary = json.loads((out / "summaries" / "a.json").read_text())
    assert 0 <= summary["f1"] <= 1 and len(summary["wire_counts"]) == 8
    assert _run(weights, [photos / "a.jpg"], out, "--overwrite", opts=opts) == 0
    assert "predicted 1, already done 0" in capsys.readouterr().out


def test_label_values_are_mapped_and_dilated(tmp_path):
    cfg = get_config(DEMO_CFG)
    label = np.zeros((20, 20), np.uint8)
    label[10, 2:18] = 255  # a one-pixel wire, as the seed saved it
    cv2.imwrite(str(tmp_path / "l.png"), label)
    ids = read_label(tmp_path / "l.png", cfg, dilate=2)
    assert ids[8:13, 5].tolist() == [1] * 5 and ids[7, 5] == 0 and ids.max() == 1


def test_bad_options_exit_with_status_2(weights, tmp_path, capsys):
    assert _run(weights, [tmp_path / "missing"], tmp_path / "out") == 2
    assert "no such photo" in capsys.readouterr().err
    assert (
        predict.main(
            ["--cfg", str(DEMO_CFG), "--input", str(tmp_path), "--output", str(tmp_path / "o")]
        )
        == 2
    )
    assert "TEST.MODEL_FILE" in capsys.readouterr().err


@pytest.mark.slow
def test_native_resolution_tiles_on_a_native_size_photo(weights, tmp_path, capsys):
    """The real setting: 1024x1024 tiles at native resolution, 256 px overlap (28 tiles)."""
    _write_rgb(tmp_path / "p" / "DJI_0002.JPG", _native_photo())
    argv = [
        "--cfg",
        str(DEMO_CFG),
        "--input",
        str(tmp_path / "p"),
        "--output",
        str(tmp_path / "o"),
        "--device",
        "cpu",
        "TEST.MODEL_FILE",
        str(weights),
    ]
    assert predict.main(argv) == 0
    mask = cv2.imread(str(tmp_path / "o" / "masks" / "DJI_0002.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (3078, 5472)


def test_cudnn_settings_of_the_experiment_file_take_effect(weights, tmp_path, monkeypatch):
    # the demo file sets CUDNN.BENCHMARK true; predict.py used to leave cudnn at its default
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    photo = tmp_path / "in" / "a.jpg"
    _write_rgb(photo, np.zeros((96, 128, 3), np.uint8))
    native = ["TEST.TILE_SCALE", "1.0"]
    assert _run(weights, [photo], tmp_path / "out", opts=native) == 0
    assert torch.backends.cudnn.benchmark is True
    assert _run(weights, [photo], tmp_path / "out2", opts=[*native, "CUDNN.BENCHMARK", "False"]) == 0
    assert torch.backends.cudnn.benchmark is False


def test_device_without_a_gpu_is_one_line(weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    photo = tmp_path / "a.jpg"
    _write_rgb(photo, np.zeros((40, 60, 3), np.uint8))
    argv = ["--cfg", str(DEMO_CFG), "--input", str(photo), "--output", str(tmp_path / "o"),
            "--device", "cuda", "TEST.MODEL_FILE", str(weights)]
    assert predict.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: --device cuda: no CUDA GPU is visible on this machine; use --device cpu"


def test_same_stem_photos_keep_their_own_outputs(weights, tmp_path, capsys):
    folder = tmp_path / "in"
    _write_rgb(folder / "a.jpg", np.zeros((96, 128, 3), np.uint8))
    _write_rgb(folder / "a.png", np.full((96, 128, 3), 200, np.uint8))
    _write_rgb(folder / "b.jpg", np.zeros((96, 128, 3), np.uint8))
    native = ["TEST.TILE_SCALE", "1.0"]
    out = folder / "predictions"  # inside the input folder
    assert _run(weights, [folder], out, opts=native) == 0
    masks = sorted(p.name for p in (out / "masks").glob("*.png"))
    assert masks == ["a.jpg.png", "a.png.png", "b.png"]
    assert "predicted 3" in capsys.readouterr().out
    # a rerun resumes all three and does not take the tool's own overlays for photos
    assert _run(weights, [folder], out, opts=native) == 0
    assert "predicted 0, already done 3, skipped 0" in capsys.readouterr().out


def test_list_file_lines_with_spaces(weights, tmp_path):
    _write_rgb(tmp_path / "DJI 0001.jpg", np.zeros((96, 128, 3), np.uint8))
    listed = tmp_path / "photos.txt"
    listed.write_text("DJI 0001.jpg\n")
    assert list_photos([listed]) == [(tmp_path / "DJI 0001.jpg", "DJI 0001.jpg")]
    listed.write_text("DJI 0001.jpg\tlabels/DJI 0001.png\n")
    assert list_photos([listed]) == [(tmp_path / "DJI 0001.jpg", "DJI 0001.jpg")]


def test_a_full_disk_names_the_mask_and_leaves_no_file(weights, tmp_path, capsys, monkeypatch):


    def full(ids, path, values=None):
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prediction, "save_id_png", full)
    photo = tmp_path / "a.jpg"
    _write_rgb(photo, np.zeros((96, 128, 3), np.uint8))
    assert _run(weights, [photo], tmp_path / "out", opts=["TEST.TILE_SCALE", "1.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: {tmp_path / 'out' / 'masks' / 'a.png'}: no space left on device while writing it"
    assert not list((tmp_path / "out" / "masks").iterdir())


def test_weights_without_the_ocr_head_are_refused(weights, tmp_path, capsys):
    state = torch.load(weights, weights_only=True)
    path = tmp_path / "no_ocr.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("ocr_distri_head")}, path)
    photo = tmp_path / "a.jpg"
    _write_rgb(photo, np.zeros((96, 128, 3), np.uint8))
    assert _run(path, [photo], tmp_path / "out", opts=["TEST.TILE_SCALE", "1.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {path}: strict load failed") and "missing" in err
    assert not (tmp_path / "out" / "masks").exists()


def test_torchrun_two_processes_predict_like_one(weights, tmp_path):
    photos = tmp_path / "photos"
    rng = np.random.default_rng(3)
    for k in range(5):  # an odd count: the processes get 3 and 2 photos
        rgb, _ = make_image(rng, 160, 96)
        _write_rgb(photos / ("sub" if k % 2 else "") / f"p{k}.jpg", rgb)
    (photos / "broken.jpg").write_bytes(b"not a photo")
    args = ["--cfg", str(DEMO_CFG), "--input", str(photos), "--device", "cpu",
            "TEST.MODEL_FILE", str(weights), "TEST.TILE_SIZE", "[128, 128]",
            "TEST.TILE_OVERLAP", "32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(REPO / "tools" / "predict.py"), *args,
                          "--output", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", str(REPO / "tools" / "predict.py"), *args,
                          "--output", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 1 and two.returncode == 1, two.stderr[-3000:]  # 1: broken skipped
    assert "predicted 5, already done 0, skipped 1" in one.stdout
    assert "predicted 5, already done 0, skipped 1" in two.stdout and "(2 processes)" in two.stdout
    assert two.stderr.count("INFO: loaded ") == 1  # rank 0 logs; the other rank only warns
    masks = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("masks/**/*.png"))
    assert len(masks) == 5
    for rel in masks:  # the same masks, byte for byte
        assert (tmp_path / "two" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes()
    assert (tmp_path / "two" / "preannotations.json").read_bytes() == (
        tmp_path / "one" / "preannotations.json").read_bytes()

    def rows(folder):  # summary.csv without the per-photo timing
        with open(folder / "summary.csv", newline="") as f:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]

    assert rows(tmp_path / "two") == rows(tmp_path / "one") and len(rows(tmp_path / "one")) == 5
    again = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node=2", str(REPO / "tools" / "predict.py"), *args,
                            "--output", str(tmp_path / "two")],
                           env=env, capture_output=True, text=True, timeout=300)
    assert "predicted 0, already done 5, skipped 1" in again.stdout  # each process resumes


def test_progress_bar_counts_the_campaign_with_photos_per_minute(weights, tmp_path, monkeypatch):
    """One bar over all photos; resumed photos count as done, not in photos per minute."""
    bars = []

    class Bar:
        def __init__(self, total, **kwargs):
            self.total, self.n, self.postfix = total, 0, []
            bars.append(self)

        def update(self, k):
            self.n += k

        def set_postfix_str(self, text):
            self.postfix.append(text)

        def close(self):
            pass

    monkeypatch.setattr(prediction, "tqdm", Bar)
    rng = np.random.default_rng(2)
    photos = tmp_path / "photos"
    for name in ("a", "b", "c"):
        _write_rgb(photos / f"{name}.jpg", make_image(rng, 160, 96)[0])
    opts = ["TEST.TILE_SIZE", "[256, 256]", "TEST.TILE_SCALE", "1.0"]
    assert _run(weights, [photos / "a.jpg"], tmp_path / "out", opts=opts) == 0
    assert _run(weights, [photos], tmp_path / "out", opts=opts) == 0  # a.jpg resumed
    bar = bars[-1]
    assert (bar.total, bar.n, len(bar.postfix)) == (3, 3, 2)  # the rate after each prediction
    assert all(t.endswith(" photos/min") and float(t.split()[0]) > 0 for t in bar.postfix)


def test_a_photo_list_with_a_byte_order_mark_names_its_first_photo_whole(tmp_path):
    from lib.core.prediction import list_photos

    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    lst = tmp_path / "photos.lst"
    lst.write_text("a.jpg\nb.jpg\n", encoding="utf-8-sig")
    assert [p for p, _ in list_photos([lst])] == [tmp_path / "a.jpg", tmp_path / "b.jpg"]


def test_label_values_that_are_no_class_are_refused_with_the_file_named(tmp_path):
    cfg = get_config(DEMO_CFG)
    label = np.zeros((20, 20), np.uint8)
    label[10, 2:18] = 7  # neither background, wire (1 / 255) nor the ignore label
    cv2.imwrite(str(tmp_path / "l.png"), label)
    with pytest.raises(ValueError, match=r"l.png has values \[7\] that are no class"):
        read_label(tmp_path / "l.png", cfg)


def test_a_looping_or_dangling_symlink_input_is_said_in_words(tmp_path):
    from lib.core.prediction import list_photos

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(FileNotFoundError, match="loop: a symbolic link that loops"):
        list_photos([tmp_path / "loop"])
    with pytest.raises(FileNotFoundError, match="gone.jpg, which does not exist"):
        list_photos([tmp_path / "dangling"])
    with pytest.raises(FileNotFoundError, match="none.jpg: no such photo, folder or list file"):
        list_photos([tmp_path / "none.jpg"])

"""tools/pick_threshold.py writes the F1-best wire threshold; test.py and predict.py use it."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from lib.config import get_config
from lib.core.thresholds import threshold_file
from lib.models import get_seg_model
from tests.tools.conftest import DEMO_CFG, tiny_opts
from tools import pick_threshold, predict
from tools import test as test_tool


def _weights(tmp_path, opts):

    torch.manual_seed(0)
    model = get_seg_model(get_config(DEMO_CFG, opts))
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    return path


def test_pick_then_test_and_predict_use_the_threshold(tiny_data, tmp_path, capsys):
    opts = tiny_opts(tiny_data, tmp_path)
    weights = _weights(tmp_path, opts)
    argv = ["--cfg", str(DEMO_CFG), *opts, "TEST.MODEL_FILE", str(weights)]
    assert pick_threshold.main([*argv, "--thresholds", "0.1,0.3,0.5,0.7,0.9"]) == 0
    printed = capsys.readouterr().out
    record = json.loads(threshold_file(weights).read_text())
    assert f"wire threshold {record['threshold']:.2f}" in printed
    assert [r["threshold"] for r in record["sweep"]] == [0.1, 0.3, 0.5, 0.7, 0.9]
    best = max(r["f1"] for r in record["sweep"])
    assert record["f1"] == best and best >= record["argmax"]["f1"] - 1e-9

    # test.py reads the file (WIRE.THRESHOLD auto, the default) and saves probabilities
    assert test_tool.main([*argv, "TEST.SAVE_PROB", "True"]) == 0
    out = tmp_path / "output" / "daodixian_seg" / DEMO_CFG.stem
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["wire_threshold"] == record["threshold"]
    f1 = {r["threshold"]: r["f1"] for r in record["sweep"]}[record["threshold"]]
    assert abs(metrics["wire"]["f1"] - f1) < 1e-9  # the same counts as the sweep's
    prob = np.asarray(Image.open(sorted((out / "val_results" / "probs").glob("*.png"))[0]))
    ids = np.asarray(Image.open(sorted((out / "val_results" / "ids").glob("*.png"))[0]))
    assert prob.dtype == np.uint8 and prob.shape == ids.shape
    wire = ids == 255
    assert (prob[wire] >= round(record["threshold"] * 255) - 1).all()
    assert (prob[~wire] <= round(record["threshold"] * 255) + 1).all()
    # argmax ignores the file; the old key's -1 still means it
    assert test_tool.main([*argv, "TEST.WIRE_THRESHOLD", "-1"]) == 0
    assert json.loads((out / "test_metrics.json").read_text())["wire_threshold"] == "argmax"

    # predict.py: a threshold near 1 leaves fewer wire pixels than argmax; probabilities saved
    photo = sorted((tiny_data / "daodixian_seg").rglob("*.jpg"))[0]
    common = ["--cfg", str(DEMO_CFG), "--input", str(photo), "--device", "cpu"]
    tail = ["TEST.MODEL_FILE", str(weights), "TEST.SAVE_PROB", "True"]
    assert predict.main([*common, "--output", str(tmp_path / "p1"), *tail,
                         "WIRE.THRESHOLD", "0.9999"]) == 0
    assert predict.main([*common, "--output", str(tmp_path / "p2"), *tail,
                         "WIRE.THRESHOLD", "argmax"]) == 0
    high = np.asarray(Image.open(next((tmp_path / "p1" / "masks").rglob("*.png"))))
    arg = np.asarray(Image.open(next((tmp_path / "p2" / "masks").rglob("*.png"))))
    assert (high > 0).mean() < (arg > 0).mean()
    assert next((tmp_path / "p1" / "probs").rglob("*.png")).is_file()


def test_a_list_without_wire_labels_is_refused_and_the_kept_threshold_stays(tiny_data, tmp_path,
                                                                             capsys):
    from lib.datasets.lists import parse_line

    opts = tiny_opts(tiny_data, tmp_path)
    weights = _weights(tmp_path, opts)
    argv = ["--cfg", str(DEMO_CFG), *opts, "TEST.MODEL_FILE", str(weights)]
    assert pick_threshold.main(argv) == 0
    kept = threshold_file(weights).read_text()
    lines = []
    for line in (tiny_data / "list" / "daodixian_seg" / "val.lst").read_text().splitlines():
        if not line.strip():
            continue
        image, label = (tiny_data / "daodixian_seg" / p for p in parse_line(line))
        empty = tmp_path / f"empty_{label.name}"
        Image.fromarray(np.zeros_like(np.asarray(Image.open(label)))).save(empty)
        lines.append(f"{image}\t{empty}")
    no_wires = tmp_path / "no_wires.lst"
    no_wires.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert pick_threshold.main([*argv, "DATASET.TEST_SET", str(no_wires)]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and f"its {len(lines)} photos hold no labelled wire pixel" in errors[0]
    assert threshold_file(weights).read_text() == kept  # nothing written over the good file

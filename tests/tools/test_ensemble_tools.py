"""TEST.MODEL_FILE a.pth,b.pth through the tools: predict, test, pick_threshold, export_onnx."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lib.config import get_config
from lib.core.thresholds import threshold_file
from lib.models import get_seg_model
from tests.tools.conftest import DEMO_CFG, tiny_opts
from tests.tools.test_export_onnx import needs_onnx
from tools import export_onnx as export_tool
from tools import pick_threshold, predict
from tools import test as test_tool


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("members")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = get_seg_model(get_config(DEMO_CFG))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
        path = folder / f"m{seed}.pth"
        torch.save(model.state_dict(), path)
        paths.append(str(path))
    return paths


def _probs(folder):
    return np.asarray(Image.open(next((folder / "probs").rglob("*.png")))).astype(int)


def test_predict_with_two_files_saves_the_mean_probability(tiny_data, weights, tmp_path):
    photo = sorted((tiny_data / "daodixian_seg").rglob("*.jpg"))[0]
    common = ["--cfg", str(DEMO_CFG), "--input", str(photo), "--device", "cpu",
              "TEST.SAVE_PROB", "True", "TEST.AMP", "", "MODEL.CHANNELS_LAST", "False"]
    runs = {"a": weights[0], "b": weights[1], "ab": f"{weights[0]},{weights[1]}"}
    for name, spec in runs.items():
        assert predict.main([*common[:4], "--output", str(tmp_path / name), *common[4:],
                             "TEST.MODEL_FILE", spec]) == 0
    a, b, ab = (_probs(tmp_path / n) for n in runs)
    assert np.abs(a - b).max() > 5  # the members disagree somewhere
    assert np.abs(ab - (a + b) / 2).max() <= 1.0  # 8-bit rounding of each map


def test_pick_threshold_and_test_on_an_ensemble(tiny_data, weights, tmp_path, capsys):
    spec = f"{weights[0]},{weights[1]}"
    argv = ["--cfg", str(DEMO_CFG), *tiny_opts(tiny_data, tmp_path), "TEST.MODEL_FILE", spec]
    assert pick_threshold.main([*argv, "--thresholds", "0.2,0.4,0.6,0.8"]) == 0
    path = threshold_file(spec)
    assert path.name.startswith("ensemble-")
    record = json.loads(path.read_text())
    assert record["model_file"] == spec
    for member in weights:  # no member's own threshold is written
        assert not threshold_file(member).exists()
    capsys.readouterr()
    assert test_tool.main(argv) == 0
    metrics_file = tmp_path / "output" / "daodixian_seg" / DEMO_CFG.stem / "test_metrics.json"
    metrics = json.loads(metrics_file.read_text())
    assert metrics["wire_threshold"] == record["threshold"] and metrics["model_file"] == spec


def test_predict_refuses_an_ensemble_of_onnx_files(tiny_data, weights, tmp_path, capsys):
    photo = sorted((tiny_data / "daodixian_seg").rglob("*.jpg"))[0]
    code = predict.main(["--cfg", str(DEMO_CFG), "--input", str(photo), "--output",
                         str(tmp_path / "p"), "TEST.MODEL_FILE", "a.onnx,b.onnx"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "export the ensemble as one model" in errors[0]


@needs_onnx
def test_export_onnx_of_an_ensemble_matches_pytorch(weights, tmp_path, capsys):
    argv = ["--cfg", str(DEMO_CFG), "--output", str(tmp_path / "e.onnx"), "--height", "64",
            "--width", "96", "TEST.MODEL_FILE", f"{weights[0]},{weights[1]}"]
    assert export_tool.main(argv) == 0
    assert "max abs difference ONNX Runtime vs PyTorch at 64x96" in capsys.readouterr().out

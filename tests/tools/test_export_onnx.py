"""tools/export_onnx.py: ONNX Runtime parity on the small W18-Small-v1 + OCR model."""

import importlib.util

import cv2
import numpy as np
import pytest
import torch

from lib.config import get_config
from lib.core.backends import BackendUnavailable, require
from lib.core.export import export_onnx, runtime_max_abs_diff
from lib.datasets.synthetic import make_image
from lib.models import get_seg_model
from tests.tools.conftest import DEMO_CFG
from tools import export_onnx as export_tool
from tools import predict

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX,
    reason="onnx/onnxruntime not installed (pip install -r requirements-optional.txt)",
)


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """The demo model with non-trivial BatchNorm statistics, so that folding matters."""
    torch.manual_seed(0)
    model = get_seg_model(get_config(DEMO_CFG))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp("model") / "model.pth"
    torch.save(model.state_dict(), path)
    return model.eval(), path


@needs_onnx
def test_onnx_runtime_matches_pytorch_at_two_sizes(trained_like, tmp_path):
    model, _ = trained_like
    head = export_onnx(model, tmp_path / "m.onnx", height=96, width=128, dynamic=True)
    with torch.no_grad():
        x = torch.randn(1, 3, 96, 128)
        folded = (head(x) - model(x)[-1]).abs().max().item()
    assert folded < 1e-4  # BatchNorm folding keeps the model's output
    assert runtime_max_abs_diff(tmp_path / "m.onnx", head, x) < 1e-4
    assert runtime_max_abs_diff(tmp_path / "m.onnx", head, torch.randn(2, 3, 64, 160)) < 1e-4


@needs_onnx
def test_cli_prints_the_difference_and_exits_zero(trained_like, tmp_path, capsys):
    _, weights = trained_like
    argv = [
        "--cfg",
        str(DEMO_CFG),
        "--output",
        str(tmp_path / "m.onnx"),
        "--height",
        "64",
        "--width",
        "96",
        "--upsample",
        "TEST.MODEL_FILE",
        str(weights),
    ]
    assert export_tool.main(argv) == 0
    out = capsys.readouterr().out
    assert "max abs difference ONNX Runtime vs PyTorch at 64x96" in out
    import onnxruntime as ort  # optional dependency: only where the test is not skipped

    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].shape == [1, 2, 64, 96]  # fixed size, upsampled


def test_missing_weights_or_onnx_exit_with_status_2(tmp_path, capsys, monkeypatch):
    argv = ["--cfg", str(DEMO_CFG), "--output", str(tmp_path / "m.onnx")]
    assert export_tool.main(argv) == 2
    assert "error:" in capsys.readouterr().err
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailable, match="pip install onnx onnxruntime"):
        require("onnx", "onnxruntime")
    with pytest.raises(BackendUnavailable, match="openvino not installed: pip install openvino nncf"):
        require("openvino")
    capsys.readouterr()
    assert export_tool.main([*argv, "TEST.MODEL_FILE", "w.pth"]) == 2  # before any weights
    assert "onnx and onnxruntime not installed" in capsys.readouterr().err


@needs_onnx
def test_weights_without_the_ocr_head_are_refused(trained_like, tmp_path, capsys):
    _, weights = trained_like
    state = torch.load(weights, weights_only=True)
    path = tmp_path / "no_ocr.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("ocr_distri_head")}, path)
    out = tmp_path / "m.onnx"
    argv = ["--cfg", str(DEMO_CFG), "--output", str(out), "TEST.MODEL_FILE", str(path)]
    assert export_tool.main(argv) == 2
    assert f"{path}: strict load failed" in capsys.readouterr().err
    assert not out.exists()


@needs_onnx
def test_predict_runs_an_exported_model_with_onnx_runtime(trained_like, tmp_path, capsys):


    _, weights = trained_like
    rng = np.random.default_rng(0)
    for k in range(2):
        rgb, _ = make_image(rng, 200, 120)
        cv2.imwrite(str(tmp_path / f"p{k}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    onnx = tmp_path / "m.onnx"
    cfg = ["--cfg", str(DEMO_CFG)]
    assert export_tool.main([*cfg, "--output", str(onnx), "--dynamic", "--height", "128",
                             "--width", "128", "--int8", str(tmp_path),
                             "TEST.MODEL_FILE", str(weights)]) == 0
    assert (tmp_path / "m_int8.onnx").is_file()
    tiles = ["TEST.TILE_SIZE", "[128, 128]", "TEST.TILE_OVERLAP", "32",
             "TEST.SCALE_LIST", "[0.75, 1.0]", "TEST.FLIP_TEST", "True"]
    common = [*cfg, "--input", *(str(tmp_path / f"p{k}.jpg") for k in range(2)), "--device", "cpu"]
    assert predict.main([*common, "--output", str(tmp_path / "pt"), "TEST.MODEL_FILE",
                         str(weights), *tiles]) == 0
    assert predict.main([*common, "--output", str(tmp_path / "ort"), "TEST.MODEL_FILE",
                         str(onnx), *tiles]) == 0
    assert predict.main([*common, "--output", str(tmp_path / "int8"), "TEST.MODEL_FILE",
                         str(tmp_path / "m_int8.onnx"), *tiles]) == 0
    for k in range(2):
        a = cv2.imread(str(tmp_path / "pt" / "masks" / f"p{k}.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "ort" / "masks" / f"p{k}.png"), cv2.IMREAD_UNCHANGED)
        c = cv2.imread(str(tmp_path / "int8" / "masks" / f"p{k}.png"), cv2.IMREAD_UNCHANGED)
        assert a.shape == (120, 200) and (a == b).mean() >= 0.995  # the same decisions
        assert (a == c).mean() >= 0.8  # INT8: close, not equal (random weights here)
    # a fixed-size export cannot take tiles of other sizes: one line, nothing done
    fixed = tmp_path / "fixed.onnx"
    assert export_tool.main([*cfg, "--output", str(fixed), "--no-check", "TEST.MODEL_FILE",
                             str(weights)]) == 0
    capsys.readouterr()
    assert predict.main([*common, "--output", str(tmp_path / "x"), "TEST.MODEL_FILE",
                         str(fixed), *tiles]) == 2
    assert "export with tools/export_onnx.py --dynamic" in capsys.readouterr().err

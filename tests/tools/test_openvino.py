"""The OpenVINO backend: export (fp32 and NNCF INT8), parity with PyTorch, and the tools that
take an .xml model as TEST.MODEL_FILE (predict, test, pick_threshold, benchmark)."""

from __future__ import annotations

import importlib.util
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
from lib.core import benchmark as bm
from lib.core.backends import BackendUnavailable, OpenVinoModel, inference_model
from lib.core.export import export_onnx, export_openvino, runtime_max_abs_diff
from lib.core.thresholds import threshold_file
from lib.datasets.synthetic import make_image
from tests.tools.conftest import DEMO_CFG, REPO, tiny_opts
from tests.tools.test_export_onnx import trained_like  # noqa: F401  (a fixture)
from tools import benchmark as bench_tool
from tools import export_onnx as export_tool
from tools import pick_threshold, predict
from tools import test as test_tool

HAVE_OPENVINO = all(importlib.util.find_spec(m) for m in ("onnx", "openvino", "nncf"))
needs_openvino = pytest.mark.skipif(
    not HAVE_OPENVINO,
    reason="onnx/openvino/nncf not installed (pip install -r requirements-optional.txt)",
)


def _photos(folder, count=2, width=200, height=120):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(count):
        rgb, _ = make_image(rng, width, height)
        cv2.imwrite(str(folder / f"p{k}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return sorted(folder.glob("*.jpg"))


@needs_openvino
def test_openvino_fp32_matches_pytorch_at_two_sizes(trained_like, tmp_path):  # noqa: F811
    model, _ = trained_like
    head = export_onnx(model, tmp_path / "m.onnx", height=96, width=128, dynamic=True)
    xml = export_openvino(tmp_path / "m.onnx", tmp_path / "m.xml")
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    assert runtime_max_abs_diff(xml, head, torch.randn(1, 3, 96, 128)) < 1e-3
    assert runtime_max_abs_diff(xml, head, torch.randn(2, 3, 64, 160)) < 1e-3
    # TEST.AMP picks the precision OpenVINO computes in; fp32 by default, not OpenVINO's own
    # default (bf16 on CPUs that have it)
    assert OpenVinoModel(xml).precision == "f32"
    bf16 = OpenVinoModel(xml, amp="bf16")
    assert bf16.precision in ("bf16", "f32")  # f32 where the CPU has no bf16
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        assert (bf16(x).argmax(1) == head(x).argmax(1)).float().mean() > 0.95


@needs_openvino
def test_export_tool_writes_fp32_and_int8_and_predict_runs_them(trained_like, tmp_path, capsys):  # noqa: F811
    _, weights = trained_like
    photos = _photos(tmp_path / "photos")
    xml = tmp_path / "m.xml"
    cfg = ["--cfg", str(DEMO_CFG)]
    assert export_tool.main([*cfg, "--output", str(xml), "--dynamic", "--height", "128",
                             "--width", "128", "--int8", str(tmp_path / "photos"),
                             "TEST.MODEL_FILE", str(weights)]) == 0
    out = capsys.readouterr().out
    assert "max abs difference OpenVINO (fp32) vs PyTorch at 128x128" in out
    assert "INT8, calibrated on 2 photos" in out
    for name in ("m.onnx", "m.xml", "m.bin", "m_int8.xml", "m_int8.bin"):
        assert (tmp_path / name).is_file(), name
    import openvino as ov  # optional dependency: only where the test is not skipped

    types = [op.get_type_name() for op in ov.Core().read_model(str(tmp_path / "m_int8.xml")).get_ops()]
    assert "FakeQuantize" in types  # quantised...
    int8_heads = [
        op.get_friendly_name() for op in ov.Core().read_model(str(tmp_path / "m_int8.xml")).get_ops()
        if op.get_type_name() == "FakeQuantize" and "cls_head" in op.get_friendly_name()
    ]
    assert not int8_heads  # ...except the classifier, left in higher precision
    tiles = ["TEST.TILE_SIZE", "[128, 128]", "TEST.TILE_OVERLAP", "32",
             "TEST.SCALE_LIST", "[0.75, 1.0]", "TEST.FLIP_TEST", "True"]
    common = [*cfg, "--input", *map(str, photos), "--device", "cpu"]
    runs = {"pt": weights, "ov": xml, "int8": tmp_path / "m_int8.xml"}
    for name, model_file in runs.items():
        assert predict.main([*common, "--output", str(tmp_path / name), "TEST.MODEL_FILE",
                             str(model_file), *tiles]) == 0, name
    assert predict.main([*common, "--output", str(tmp_path / "bf16"), "TEST.MODEL_FILE",
                         str(xml), "TEST.AMP", "bf16", *tiles]) == 0
    for photo in photos:
        masks = {name: cv2.imread(str(tmp_path / name / "masks" / f"{photo.stem}.png"),
                                  cv2.IMREAD_UNCHANGED) for name in ("pt", "ov", "int8", "bf16")}
        assert masks["pt"].shape == (120, 200)
        assert (masks["pt"] == masks["ov"]).mean() >= 0.995  # the same decisions
        assert (masks["pt"] == masks["bf16"]).mean() >= 0.95
        assert (masks["pt"] == masks["int8"]).mean() >= 0.8  # close, not equal (random weights)


def _int8_convolutions(xml):
    """Names of the convolutions whose weights NNCF stored in INT8 (Constant i8 -> Convert ->
    Multiply), i.e. the layers that run quantised."""
    import openvino as ov  # optional dependency: only where the test is not skipped

    names = set()
    for op in ov.Core().read_model(str(xml)).get_ops():
        if op.get_type_name() != "Convolution":
            continue
        node = op.input_value(1).get_node()
        while node.get_input_size() and node.get_type_name() in ("Multiply", "Subtract", "Convert"):
            node = node.input_value(0).get_node()
        if node.get_type_name() == "Constant" and node.get_element_type() == ov.Type.i8:
            names.add(op.get_friendly_name())
    return " ".join(sorted(names))


@needs_openvino
def test_int8_keep_names_the_layers_left_unquantised(trained_like, tmp_path, capsys):  # noqa: F811
    _, weights = trained_like
    _photos(tmp_path / "photos")
    common = ["--cfg", str(DEMO_CFG), "--dynamic", "--height", "96", "--width", "96", "--no-check",
              "--int8", str(tmp_path / "photos"), "TEST.MODEL_FILE", str(weights)]
    assert export_tool.main(["--output", str(tmp_path / "a.xml"), "--int8-keep",
                             "ocr_gather,ocr_distri,cls_head,aux_head,refine", *common]) == 0
    assert "ocr_gather, ocr_distri, cls_head, aux_head, refine unquantised" in capsys.readouterr().out
    whole_head_kept = _int8_convolutions(tmp_path / "a_int8.xml")
    assert "conv3x3_ocr" in whole_head_kept and "stage4" in whole_head_kept
    for layer in ("ocr_distri_head", "aux_head", "cls_head"):
        assert layer not in whole_head_kept
    assert export_tool.main(["--output", str(tmp_path / "b.xml"), "--int8-keep", "", *common]) == 0
    assert "every layer quantised" in capsys.readouterr().out
    every = _int8_convolutions(tmp_path / "b_int8.xml")
    for layer in ("object_context_block", "cls_head", "aux_head.3"):
        assert layer in every
    # the default: the convolutions around the OCR head's attention quantised, the attention
    # and the two classifiers not
    assert export_tool.main(["--output", str(tmp_path / "c.xml"), *common]) == 0
    assert ("ocr_gather, object_context_block, cls_head, aux_head.3, refine unquantised"
            in capsys.readouterr().out)
    default = _int8_convolutions(tmp_path / "c_int8.xml")
    for layer in ("conv3x3_ocr", "aux_head.0", "conv_bn_dropout"):
        assert layer in default
    for layer in ("object_context_block", "cls_head", "aux_head.3"):
        assert layer not in default


@needs_openvino
def test_test_tool_and_pick_threshold_take_an_openvino_model(tiny_data, tmp_path, capsys):
    opts = tiny_opts(tiny_data, tmp_path)
    cfg = get_config(DEMO_CFG, opts)
    torch.manual_seed(0)
    model = _calibrated(cfg)
    weights = tmp_path / "w.pth"
    torch.save(model.state_dict(), weights)
    threshold_file(weights).write_text(json.dumps({"threshold": 0.42}))
    xml = tmp_path / "m.xml"
    assert export_tool.main(["--cfg", str(DEMO_CFG), *opts, "--output", str(xml), "--dynamic",
                             "--no-check", "TEST.MODEL_FILE", str(weights)]) == 0
    # the threshold picked for the weights goes with the exported models
    assert json.loads(threshold_file(xml).read_text())["threshold"] == 0.42
    assert "copied w.pth.wire_threshold.json" in capsys.readouterr().out
    results = {}
    for name, model_file in (("pt", weights), ("ov", xml)):
        assert test_tool.main(["--cfg", str(DEMO_CFG), *opts, "OUTPUT_DIR",
                               str(tmp_path / name), "TEST.MODEL_FILE", str(model_file)]) == 0
        path = tmp_path / name / "daodixian_seg" / DEMO_CFG.stem / "test_metrics.json"
        results[name] = json.loads(path.read_text())
    assert results["ov"]["wire_threshold"] == 0.42
    assert results["ov"]["model_file"] == str(xml)
    for key in ("miou", "pixel_acc"):
        assert abs(results["ov"][key] - results["pt"][key]) < 0.01, key
    # a threshold picked with the OpenVINO model is written beside it, not beside the weights
    picked = tmp_path / "ov" / "picked"
    assert pick_threshold.main(["--cfg", str(DEMO_CFG), *opts, "OUTPUT_DIR", str(picked),
                                "TEST.MODEL_FILE", str(xml), "--thresholds", "0.3,0.5"]) == 0
    record = json.loads(threshold_file(xml).read_text())
    assert record.get("model_file") == str(xml) and record["threshold"] in (0.3, 0.5)
    assert json.loads(threshold_file(weights).read_text())["threshold"] == 0.42


def _calibrated(cfg):
    from lib.models import get_seg_model

    return bm.calibrate(get_seg_model(cfg, load_pretrained=False), size=(64, 96))


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_bad_openvino_files_are_one_line(tmp_path, capsys):
    xml = tmp_path / "m.xml"
    xml.write_text("<net>not a model</net>")
    photo = _photos(tmp_path / "photos", count=1)[0]
    argv = ["--cfg", str(DEMO_CFG), "--input", str(photo), "--output", str(tmp_path / "out"),
            "--device", "cpu", "TEST.MODEL_FILE", str(xml)]
    assert predict.main(argv) == 2
    err = _errors(capsys)
    assert len(err) == 1 and str(xml) in err[0]
    if HAVE_OPENVINO:  # without openvino the line says how to install it instead
        assert "m.bin are missing" in err[0]
        xml.with_suffix(".bin").write_bytes(b"")
        assert predict.main(argv) == 2
        err = _errors(capsys)
        assert len(err) == 1 and "not a model OpenVINO can read" in err[0]
    else:
        assert "pip install openvino nncf" in err[0]


def test_openvino_models_run_on_the_cpu_only(tmp_path):
    cfg = get_config(DEMO_CFG)
    with pytest.raises(ValueError, match="OpenVINO models run on the CPU; use --device cpu"):
        inference_model(cfg, str(tmp_path / "m.xml"), torch.device("cuda"))


def test_missing_openvino_is_named_with_the_install_command(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name in ("openvino", "nncf") else real(name))
    with pytest.raises(BackendUnavailable, match="pip install openvino nncf"):
        OpenVinoModel(tmp_path / "m.xml")
    argv = ["--cfg", str(DEMO_CFG), "--output", str(tmp_path / "m.xml"), "--int8", "photos",
            "TEST.MODEL_FILE", "w.pth"]
    assert export_tool.main(argv) == 2
    assert "openvino and nncf not installed" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()  # refused before anything is written


SIGNAL_AFTER_TWO_MODELS = """
import gc, os, signal, sys
from lib.core.backends import OpenVinoModel
from lib.utils.signal_stack import current_signal_stack

before = current_signal_stack()
first = OpenVinoModel(sys.argv[1])
second = OpenVinoModel(sys.argv[1])  # lives longer than the first: first in, first out
del first
gc.collect()
del second
gc.collect()
signal.signal(signal.SIGUSR1, lambda *_: print("handled", flush=True))
os.kill(os.getpid(), signal.SIGUSR1)
print("same stack" if current_signal_stack() == before else "stack changed")
"""


@needs_openvino
def test_a_signal_after_two_openvino_models_is_handled(trained_like, tmp_path):  # noqa: F811
    # OpenVINO's CPU plugin leaves the thread on a freed signal stack when two plugins end in
    # the order they began; the next Python signal handler then died of SIGSEGV
    model, _ = trained_like
    head = export_onnx(model, tmp_path / "m.onnx", height=64, width=64, dynamic=True)
    xml = export_openvino(tmp_path / "m.onnx", tmp_path / "m.xml")
    del head
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", SIGNAL_AFTER_TWO_MODELS,
                          str(xml)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert run.stdout.split() == ["handled", "same", "stack"]


@needs_openvino
def test_benchmark_openvino_rows(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_tool.main(["--cfg", str(DEMO_CFG), "--runs", "1", "--warmup", "0", "--threads",
                            "1", "--json", str(out), "--what", "infer", "--input-size", "64x96",
                            "--variants", "fp32 eager,openvino,openvino bf16,openvino int8"]) == 0
    rows = {r["variant"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"fp32 eager", "openvino", "openvino bf16", "openvino int8"}
    assert rows["openvino"]["argmax_agree"] > 0.99 and rows["openvino"]["max_abs_diff"] < 1e-3
    for name in ("openvino bf16", "openvino int8"):
        assert rows[name]["images_per_s"] > 0 and rows[name]["max_abs_diff"] > 0
    with pytest.raises(ValueError, match="inference-only"):
        bm.train_case(torch.nn.Conv2d(3, 2, 1), get_config(DEMO_CFG),
                      bm.parse_variant("openvino"), torch.zeros(1, 3, 8, 8),
                      torch.zeros(1, 8, 8, dtype=torch.long))


@needs_openvino
def test_benchmark_photo_row_of_an_openvino_variant(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_tool.main(["--cfg", str(DEMO_CFG), "--runs", "1", "--warmup", "0", "--threads",
                            "1", "--json", str(out), "--what", "photo", "--photo-size", "96x160",
                            "--scales", "1.0", "--no-flip", "--variants", "openvino int8"]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["variant"] == "openvino int8" and row["images_per_s"] > 0
    assert row["peak_mem_mb"] > 0 and "skipped" not in row


@needs_openvino
def test_torchrun_two_processes_predict_with_openvino_like_one(trained_like, tmp_path):  # noqa: F811
    _, weights = trained_like
    photos = _photos(tmp_path / "photos", count=3, width=160, height=96)
    xml = tmp_path / "m.xml"
    assert export_tool.main(["--cfg", str(DEMO_CFG), "--output", str(xml), "--dynamic",
                             "--no-check", "TEST.MODEL_FILE", str(weights)]) == 0
    args = ["--cfg", str(DEMO_CFG), "--input", *map(str, photos), "--device", "cpu",
            "TEST.MODEL_FILE", str(xml), "TEST.TILE_SIZE", "[128, 128]", "TEST.TILE_OVERLAP", "32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(REPO / "tools" / "predict.py"), *args,
                          "--output", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", str(REPO / "tools" / "predict.py"), *args,
                          "--output", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert "(2 processes)" in two.stdout
    for photo in photos:  # the same masks, byte for byte
        rel = Path("masks") / f"{photo.stem}.png"
        assert (tmp_path / "two" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes()

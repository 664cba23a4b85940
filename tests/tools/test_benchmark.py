"""tools/benchmark.py in its tiny mode: a small model, a tiny input, one run; valid json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from lib.core import benchmark as bm
from lib.core.benchmark import parse_variant
from lib.core.export import KEEP_FP32
from tools.benchmark import main

REPO = Path(__file__).resolve().parents[2]
DEMO_CFG = str(REPO / "experiments" / "daodixian_seg" / "seg_hrnet_ocr_w18_small_v1_demo.yaml")
TINY = ["--runs", "1", "--warmup", "0", "--threads", "1"]


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "bench.json"
    assert main(["--cfg", DEMO_CFG, *TINY, "--json", str(out), *args]) == 0
    result = json.loads(out.read_text())
    for key in ("torch", "device", "threads", "peak_mem_method", "rows"):
        assert key in result
    for row in result["rows"]:
        for key in ("variant", "images_per_s", "latency_ms", "peak_mem_mb"):
            assert key in row
    return result


def test_infer_rows_start_with_fp32_eager_and_report_agreement(tmp_path):
    result = _run(tmp_path, "--what", "infer", "--input-size", "64x96",
                  "--variants", "fp32 eager,channels_last,bn folded+channels_last,fp16")
    rows = result["rows"]
    assert [r["variant"] for r in rows][:3] == ["fp32 eager", "channels_last", "bn folded+channels_last"]
    assert rows[0]["images_per_s"] > 0 and rows[0]["speedup"] == 1.0
    assert rows[0]["peak_mem_mb"] > 0
    assert rows[2]["argmax_agree"] > 0.99
    assert "CUDA" in rows[3]["skipped"]  # fp16 autocast is refused on CPU, reported in the row


def test_infer_on_a_photo_resized_to_the_input_size(tmp_path, monkeypatch):
    photo = bm.write_test_photo(tmp_path / "p.jpg", 90, 150)
    seen = []
    infer_case = bm.infer_case
    monkeypatch.setattr(bm, "infer_case", lambda model, variant, x, *rest: seen.append(x) or infer_case(model, variant, x, *rest))
    result = _run(tmp_path, "--what", "infer", "--input-size", "64x96", "--batch", "2", "--photo", str(photo),
                  "--variants", "fp32 eager,channels_last")
    assert result["photo"] == str(photo) and result["rows"][1]["argmax_agree"] > 0.99
    from lib.datasets.base import normalise
    from lib.datasets.decode import decode_image
    expected = normalise(decode_image(photo, size=(96, 64)))
    assert seen[0].shape == (2, 3, 64, 96)
    assert torch.equal(seen[0][0], expected) and torch.equal(seen[0][1], expected)


def test_train_rows(tmp_path):
    result = _run(tmp_path, "--what", "train", "--input-size", "64x64", "--batch", "2",
                  "--variants", "fp32 eager,channels_last")
    assert all(r["images_per_s"] > 0 for r in result["rows"])


def test_data_rows_decode_a_generated_photo(tmp_path):
    result = _run(tmp_path, "--what", "data", "--photo-size", "300x500", "--samples", "2",
                  "TRAIN.BASE_SIZE", "256", "TRAIN.IMAGE_SIZE", "[128, 96]")
    assert [r["variant"] for r in result["rows"]] == [
        "seed decode", "decode once", "reduced decode", "sample, reduced decode",
        "sample, cache first epoch", "sample, cache later epochs"]
    # the photo (500 wide, drawn at 128..538) cached at full size and 1/2, the label packed
    arrays = 500 * 300 * 3 + 250 * 150 * 3 + 300 * 500 // 8 + 300  # (rows padded to bytes)
    assert arrays < result["cache_bytes_per_photo"] < arrays + 2000  # + npy headers, meta


def test_photo_row(tmp_path):
    result = _run(tmp_path, "--what", "photo", "--photo-size", "120x200", "--scales", "0.5,1.0",
                  "--variants", "fp32 eager", "TEST.BASE_SIZE", "200", "TEST.IMAGE_SIZE", "[96, 64]")
    assert result["input_size"] == [1, 3, 120, 200]
    assert result["rows"][0]["latency_ms"] > 0


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        parse_variant("fp32+turbo")
    assert parse_variant("bn folded+bf16+channels_last").fold_bn


def test_cudnn_settings_of_the_experiment_file_take_effect(tmp_path, monkeypatch):

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    _run(tmp_path, "--what", "infer", "--input-size", "32x32", "--variants", "fp32 eager")
    assert torch.backends.cudnn.benchmark is True  # the demo file's CUDNN.BENCHMARK


def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys, monkeypatch):

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--cfg", DEMO_CFG, "--device", "cuda", *TINY]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err


def test_a_missing_pretrained_file_falls_back_to_random_weights(tmp_path, caplog):
    result = _run(tmp_path, "--what", "infer", "--input-size", "32x32", "--variants", "fp32 eager",
                  "MODEL.PRETRAINED", str(tmp_path / "absent.pth"))
    assert result["weights"].startswith("calibrated random")
    assert "absent.pth not found" in caplog.text


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")),
    reason="onnx/onnxruntime not installed (pip install -r requirements-optional.txt)",
)
def test_onnx_runtime_rows_fp32_and_int8_calibrated_on_photos(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(2):
        bm.write_test_photo(photos / f"c{k}.jpg", 96, 128)
    result = _run(tmp_path, "--what", "infer", "--input-size", "64x96", "--calibrate",
                  str(photos), "--variants", "fp32 eager,onnxruntime,onnxruntime int8")
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"fp32 eager", "onnxruntime", "onnxruntime int8"}
    assert rows["onnxruntime"]["argmax_agree"] > 0.99 and rows["onnxruntime"]["max_abs_diff"] < 1e-3
    # INT8 ran and changed the numbers (random weights: its argmax agreement says little; the
    # real-photo F1 of INT8 models is in docs/benchmarks.md)
    assert rows["onnxruntime int8"]["images_per_s"] > 0
    assert rows["onnxruntime int8"]["max_abs_diff"] > 0


def test_int8_variants_name_what_they_leave_unquantised():
    default = parse_variant("openvino int8 bf16")
    assert default.int8 and default.int8_keep == KEEP_FP32
    v = parse_variant("openvino int8 bf16 keep=cls_head+aux_head.3")
    assert v.base == "openvino int8 bf16" and v.exported and v.int8
    assert v.int8_keep == ("cls_head", "aux_head.3")
    assert parse_variant("onnxruntime int8 keep=none").int8_keep == ()
    for bad in ("openvino keep=cls_head", "fp32 eager keep=cls_head", "openvino int8 keep=a++b"):
        with pytest.raises(ValueError, match="keep="):
            parse_variant(bad)


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")),
    reason="onnx/onnxruntime not installed (pip install -r requirements-optional.txt)",
)
def test_keep_sets_are_quantised_separately_in_one_run(tmp_path, monkeypatch):
    keeps = []
    quantize = bm.quantize_int8

    def spy(source, target, calibration, keep_fp32):
        keeps.append((Path(target).name, keep_fp32))
        return quantize(source, target, calibration, keep_fp32=keep_fp32)

    monkeypatch.setattr(bm, "quantize_int8", spy)
    result = _run(tmp_path, "--what", "infer", "--input-size", "64x96", "--variants",
                  "fp32 eager,onnxruntime int8,onnxruntime int8 keep=none")
    rows = {r["variant"]: r for r in result["rows"]}
    assert all(rows[v]["images_per_s"] > 0 for v in ("onnxruntime int8", "onnxruntime int8 keep=none"))
    assert keeps == [("model_int8.onnx", KEEP_FP32), ("model_int8_keep_none.onnx", ())]
    # the classifiers quantised too: another model, other numbers
    assert rows["onnxruntime int8 keep=none"]["max_abs_diff"] != rows["onnxruntime int8"]["max_abs_diff"]


def test_a_bf16_row_on_a_device_without_bf16_says_it_ran_fp32(tmp_path, monkeypatch, capsys):
    from lib.utils import amp

    monkeypatch.setattr(amp, "bf16_supported", lambda device: False)
    result = _run(tmp_path, "--what", "infer", "--input-size", "64x96",
                  "--variants", "fp32 eager,bf16")
    rows = {r["variant"]: r for r in result["rows"]}
    assert rows["bf16"]["ran_as"] == "fp32 (no native bf16 here)"
    assert "ran_as" not in rows["fp32 eager"]
    assert "bf16 [ran fp32 (no native bf16 here)]" in capsys.readouterr().out


def test_cpu_description_names_model_deciding_extensions_and_cores(monkeypatch):
    """The one line every timing names its machine by: the model, the extensions that pick the
    fastest path (AMX, bf16, VNNI; not the baseline AVX ones) and the core count."""
    monkeypatch.setattr(bm, "cpu_model_name", lambda: "Some CPU")
    monkeypatch.setattr(bm, "cpu_features", lambda: ["amx_bf16", "avx512_vnni", "avx512f", "avx2"])
    monkeypatch.setattr(bm.os, "cpu_count", lambda: 2)
    assert bm.cpu_description() == "Some CPU (amx_bf16, avx512_vnni), 2 cores"
    monkeypatch.setattr(bm, "cpu_features", lambda: ["avx2"])
    assert bm.cpu_description() == "Some CPU (no AMX, bf16 or VNNI), 2 cores"
    assert bm.environment(torch.device("cpu"))["device_name"] == "Some CPU"

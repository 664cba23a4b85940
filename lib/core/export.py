"""Exporting a trained segmentation model for CPU runtimes and edge boxes: ONNX (run by ONNX
Runtime), OpenVINO IR converted from that ONNX graph, and INT8 versions of both.

The exported graph takes a normalised (N, 3, H, W) float32 image ("image") and returns the
prediction output ("logits"): (N, C, H/4, W/4) as the network computes it, or (N, C, H, W) with
`upsample` (the bilinear resize test.py applies). The model is exported in eval mode with
BatchNorm folded into the convolutions; H and W are fixed, or dynamic with `dynamic`.

The OpenVINO model is the same graph (converted from the ONNX file, weights kept in fp32):
`export_openvino`; `quantize_openvino` makes its INT8 version with NNCF post-training
quantisation, `quantize_int8` the ONNX Runtime one (QDQ). Both calibrate on the team's photos
(`calibration_images`) and keep the layers named in KEEP_FP32 in higher precision. The runtimes
that load these files are in lib/core/backends.py.

onnx, onnxruntime, openvino and nncf are optional dependencies (requirements-optional.txt):
without them `require` raises `BackendUnavailable` with the command that installs them.
"""

from __future__ import annotations

import copy
import logging
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.core.backends import OnnxRuntimeModel, OpenVinoModel, require
from lib.datasets.base import normalise
from lib.datasets.decode import decode_image
from lib.datasets.lists import IMAGE_SUFFIXES
from lib.models.bn_folding import fold_batchnorm
from lib.utils.signal_stack import keep_signal_stack

__all__ = ["PredictionHead", "export_onnx", "runtime_max_abs_diff", "quantize_int8",
           "export_openvino", "quantize_openvino", "calibration_images", "KEEP_FP32"]


class PredictionHead(nn.Module):
    """The model reduced to one tensor: output `output_index`, optionally resized to the input."""

    def __init__(
        self,
        model: nn.Module,
        output_index: int = -1,
        upsample: bool = False,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.model, self.output_index = model, output_index
        self.upsample, self.align_corners = upsample, align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, C, H/4, W/4), or (N, C, H, W) with upsample."""
        out = self.model(x)
        if isinstance(out, (list, tuple)):
            out = out[self.output_index]
        if self.upsample:
            out = F.interpolate(
                out, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners
            )
        return out


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    height: int,
    width: int,
    dynamic: bool = False,
    opset: int = 17,
    output_index: int = -1,
    upsample: bool = False,
    align_corners: bool = True,
) -> PredictionHead:
    """Export a copy of `model` (eval, BN folded) to `path`; returns the exported PyTorch module
    (CPU, eval) for parity checks. `height` x `width` is the traced size (fixed unless `dynamic`)."""
    require("onnx")
    net = fold_batchnorm(copy.deepcopy(model).cpu().eval())
    head = PredictionHead(net, output_index, upsample, align_corners).eval()
    sample = torch.zeros(1, 3, height, width)
    axes = {
        "image": {0: "batch", 2: "height", 3: "width"},
        "logits": {0: "batch", 2: "out_h", 3: "out_w"},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript-based exporter (deprecated since torch 2.9, still shipped): it needs
        # no onnxscript and handles the F.interpolate sizes of HRNet with dynamic axes.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            head,
            (sample,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes=axes if dynamic else None,
            do_constant_folding=True,
        )
    return head


def runtime_max_abs_diff(path: str | Path, module: nn.Module, sample: torch.Tensor) -> float:
    """Largest |runtime - PyTorch| over the output for a (N, 3, H, W) `sample` (CPU): ONNX
    Runtime for an .onnx file, OpenVINO in fp32 for an .xml file."""
    runtime = (OpenVinoModel(path, any_size=False) if Path(path).suffix.lower() == ".xml"
               else OnnxRuntimeModel(path, any_size=False))
    exported = runtime(sample).numpy()
    with torch.no_grad():
        torch_out = module.cpu().eval()(sample.cpu()).numpy()
    if exported.shape != torch_out.shape:
        raise ValueError(f"{path}: output {exported.shape} differs from PyTorch {torch_out.shape}")
    return float(np.abs(exported - torch_out).max())


# layers left in fp32 by default: the OCR head's object-context attention (ocr_gather_head, and
# the key / query / value projections and attention of ocr_distri_head's object_context_block)
# and the two classifiers (cls_head, aux_head.3), whose faint wire responses INT8 rounding turned
# into false wires (wire precision 0.28-0.85 when quantised), and the full-resolution
# refinement (MODEL.REFINE_CHANNELS), which corrects those logits. The convolutions around them
# are quantised, a large share of the work: conv3x3_ocr, the soft-region head's first 1x1
# convolution (aux_head.0) and the fusion after the attention (ocr_distri_head.conv_bn_dropout).
# On the five real-photo folds wire F1 moved by at most 0.003 with them in INT8 (0.011 with
# every layer), while OpenVINO INT8 ran W48 + OCR 1.28x and W18-Small 1.26x faster than with
# only conv3x3_ocr quantised (docs/benchmarks.md).
KEEP_FP32 = ("ocr_gather", "object_context_block", "cls_head", "aux_head.3", "refine")


def quantize_int8(
    source: Path, target: Path, calibration: torch.Tensor, keep_fp32: tuple[str, ...] = KEEP_FP32
) -> None:
    """INT8 static quantisation of an exported model: QDQ format, per-channel INT8 weights,
    UINT8 activations with ranges calibrated (min-max) on `calibration` (N, 3, H, W). Nodes
    whose name contains one of `keep_fp32` stay in fp32."""
    require("onnx", "onnxruntime")
    # optional dependency (requirements-optional.txt): imported only when quantising
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration[i : i + 1].numpy() for i in range(len(calibration)))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"image": batch}

    with tempfile.TemporaryDirectory() as scratch:  # nothing but `target` is left behind
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))  # shape inference and graph clean-up
        excluded = [
            node.name for node in onnx.load(str(prepared)).graph.node
            if any(part in node.name for part in keep_fp32)
        ]  # fmt: skip
        quantize_static(
            str(prepared), str(target), Images(), nodes_to_exclude=excluded,
            quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
        )  # fmt: skip


def export_openvino(source: Path, target: Path) -> Path:
    """OpenVINO IR (`target` .xml and its .bin) converted from the exported ONNX file `source`:
    the same graph (BatchNorm folded, shapes as exported), weights kept in fp32."""
    require("openvino")
    import openvino as ov  # optional dependency: imported only when converting

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(source)), str(target), compress_to_fp16=False)
    return target


def quantize_openvino(
    source: Path, target: Path, calibration: torch.Tensor, keep_fp32: tuple[str, ...] = KEEP_FP32
) -> Path:
    """INT8 post-training quantisation of an OpenVINO model by NNCF: activation ranges
    calibrated on `calibration` (N, 3, H, W) as min-max (a thin wire's response is the
    outlier NNCF's default quantile ranges clip: fold 1 of the real photos lost 0.007 wire F1
    with them, 0.0004 with min-max), weights per channel, fast bias correction.
    Operations whose name contains one of `keep_fp32` are left unquantised (they run in the
    precision the runtime is given: fp32, or bf16 with TEST.AMP bf16)."""
    require("openvino", "nncf")
    import nncf  # optional dependencies: imported only when quantising
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    nncf.set_log_level(logging.WARNING)  # one INFO line per layer otherwise
    model = ov.Core().read_model(str(source))
    samples = [calibration[i : i + 1].numpy() for i in range(len(calibration))]
    scope = nncf.IgnoredScope(patterns=[f".*{re.escape(p)}.*" for p in keep_fp32], validate=False)
    ranges = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
    )
    with keep_signal_stack():  # NNCF's engines each create a CPU plugin: signal_stack.py
        quantized = nncf.quantize(
            model, nncf.Dataset(samples), subset_size=len(samples), ignored_scope=scope,
            advanced_parameters=ranges,
        )
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return target


def calibration_images(folder: str, height: int, width: int, limit: int = 16) -> torch.Tensor:
    """Up to `limit` photos of `folder` (sorted), resized to height x width and normalised."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"{folder}: no photos to calibrate the quantisation on")
    return torch.stack([normalise(decode_image(p, (width, height))) for p in paths[:limit]])

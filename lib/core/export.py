"""ONNX export of a trained segmentation model for edge boxes, and the ONNX Runtime parity check.

The exported graph takes a normalised (N, 3, H, W) float32 image ("image") and returns the
prediction output ("logits"): (N, C, H/4, W/4) as the network computes it, or (N, C, H, W) with
`upsample` (the bilinear resize test.py applies). The model is exported in eval mode with
BatchNorm folded into the convolutions; H and W are fixed, or dynamic with `dynamic`.

onnx and onnxruntime are optional dependencies (requirements-optional.txt): without them
`require_onnx` raises `OnnxUnavailable` with the command that installs them.
"""

from __future__ import annotations

import copy
import importlib.util
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.datasets.base import normalise
from lib.datasets.decode import decode_image
from lib.datasets.lists import IMAGE_SUFFIXES
from lib.models.bn_folding import fold_batchnorm

__all__ = ["OnnxUnavailable", "require_onnx", "PredictionHead", "export_onnx", "onnx_max_abs_diff",
           "OnnxRuntimeModel", "quantize_int8", "calibration_images"]

INSTALL_HINT = "pip install onnx onnxruntime  (or pip install -r requirements-optional.txt)"


class OnnxUnavailable(RuntimeError):
    """onnx or onnxruntime is not installed."""


def require_onnx(*modules: str) -> None:
    """Raise OnnxUnavailable unless every module in `modules` (default onnx, onnxruntime) imports."""
    missing = [
        m for m in (modules or ("onnx", "onnxruntime")) if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise OnnxUnavailable(f"{' and '.join(missing)} not installed: {INSTALL_HINT}")


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
    require_onnx("onnx")
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


def onnx_max_abs_diff(path: str | Path, module: nn.Module, sample: torch.Tensor) -> float:
    """Largest |ONNX Runtime - PyTorch| over the output for a (N, 3, H, W) `sample` (CPU)."""
    onnx_out = OnnxRuntimeModel(path, any_size=False)(sample).numpy()
    with torch.no_grad():
        torch_out = module.cpu().eval()(sample.cpu()).numpy()
    if onnx_out.shape != torch_out.shape:
        raise ValueError(f"ONNX output {onnx_out.shape} differs from PyTorch {torch_out.shape}")
    return float(np.abs(onnx_out - torch_out).max())


class OnnxRuntimeModel(nn.Module):
    """An exported .onnx file run by ONNX Runtime on the CPU, called like the network: (N, 3, H, W)
    float32 -> the exported output. tools/predict.py and tools/benchmark.py use it when
    TEST.MODEL_FILE ends with .onnx. The export must have dynamic height and width
    (tools/export_onnx.py --dynamic) for tiles and scales of any size (`any_size`; False for
    the parity check of a fixed-size export). It has no parameters:
    BatchNorm folding, channels_last and autocast do not apply (the graph is already folded)."""

    def __init__(self, path: str | Path, threads: int = 0, any_size: bool = True) -> None:
        super().__init__()
        require_onnx("onnxruntime")
        import onnxruntime as ort  # optional dependency (requirements-optional.txt): only when used

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"{path}: not a model ONNX Runtime can load ({err})") from None
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != ["image"]:
            raise ValueError(f"{path}: expected one input named 'image' (tools/export_onnx.py)")
        fixed = [d for d in inputs[0].shape[2:] if isinstance(d, int)]
        if any_size and fixed:
            raise ValueError(
                f"{path}: exported for a fixed {inputs[0].shape[2]}x{inputs[0].shape[3]} input; "
                "export with tools/export_onnx.py --dynamic to predict tiles of any size"
            )
        self.path = Path(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (out,) = self.session.run(None, {"image": image})
        return torch.from_numpy(out)


# layers left in fp32 by default: the OCR head and the classifiers, whose faint wire
# responses INT8 rounding turned into false wires (wire precision 0.28-0.85 when quantised),
# and the full-resolution refinement (MODEL.REFINE_CHANNELS), which corrects those logits
KEEP_FP32 = ("ocr", "cls_head", "aux_head", "refine")


def quantize_int8(
    source: Path, target: Path, calibration: torch.Tensor, keep_fp32: tuple[str, ...] = KEEP_FP32
) -> None:
    """INT8 static quantisation of an exported model: QDQ format, per-channel INT8 weights,
    UINT8 activations with ranges calibrated (min-max) on `calibration` (N, 3, H, W). Nodes
    whose name contains one of `keep_fp32` stay in fp32."""
    require_onnx()
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


def calibration_images(folder: str, height: int, width: int, limit: int = 16) -> torch.Tensor:
    """Up to `limit` photos of `folder` (sorted), resized to height x width and normalised."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"{folder}: no photos to calibrate the quantisation on")
    return torch.stack([normalise(decode_image(p, (width, height))) for p in paths[:limit]])

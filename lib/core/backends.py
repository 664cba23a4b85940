"""Exported models run on the CPU by another runtime, called like the network.

TEST.MODEL_FILE picks the backend by its suffix:

    .pth / .pt   PyTorch (the default): the experiment's model, loaded strictly
    .onnx        ONNX Runtime, a graph of tools/export_onnx.py --dynamic
    .xml         OpenVINO, a model of tools/export_onnx.py --openvino (its weights in the .bin
                 beside it); `<name>_int8.xml` is the NNCF-quantised one

`inference_model` is the one way the tools (predict, test, pick_threshold, cross_validate's zoom
reference) get a model to infer with. An exported model takes a normalised (N, 3, H, W) float32
image and returns the logits of the output it was exported with; it has no parameters, so
TEST.FOLD_BN and MODEL.CHANNELS_LAST do not apply (the graph is already folded). TEST.AMP picks
OpenVINO's inference precision (`""` fp32, `bf16`, `fp16`; OpenVINO falls back to fp32 where the
CPU lacks the type); ONNX Runtime runs the graph as it is.

onnx, onnxruntime, openvino and nncf are optional (requirements-optional.txt): a missing one
raises `BackendUnavailable` with the command that installs it.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from torch import nn

from lib.utils.signal_stack import keep_signal_stack

__all__ = ["BackendUnavailable", "require", "EXPORTED_SUFFIXES", "is_exported", "backend_name",
           "OnnxRuntimeModel", "OpenVinoModel", "load_exported", "inference_model"]

logger = logging.getLogger(__name__)

INSTALL = {
    "onnx": "pip install onnx onnxruntime",
    "onnxruntime": "pip install onnx onnxruntime",
    "openvino": "pip install openvino nncf",
    "nncf": "pip install openvino nncf",
}
EXPORTED_SUFFIXES = {".onnx": "ONNX Runtime", ".xml": "OpenVINO"}
# TEST.AMP -> OpenVINO's INFERENCE_PRECISION_HINT (its own default is bf16 where the CPU has it)
OPENVINO_PRECISION = {"": "f32", "bf16": "bf16", "fp16": "f16"}


class BackendUnavailable(RuntimeError):
    """An optional runtime (onnx, onnxruntime, openvino, nncf) is not installed."""


def require(*modules: str) -> None:
    """Raise BackendUnavailable unless every module in `modules` imports."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        hints = dict.fromkeys(INSTALL.get(m, f"pip install {m}") for m in missing)
        raise BackendUnavailable(
            f"{' and '.join(missing)} not installed: {'; '.join(hints)}  "
            "(or pip install -r requirements-optional.txt)"
        )


def is_exported(path: str | Path) -> bool:
    """Whether `path` names an exported model (.onnx or .xml) rather than PyTorch weights."""
    return Path(str(path)).suffix.lower() in EXPORTED_SUFFIXES


def backend_name(path: str | Path) -> str:
    """'ONNX Runtime', 'OpenVINO' or 'PyTorch', from the file's suffix."""
    return EXPORTED_SUFFIXES.get(Path(str(path)).suffix.lower(), "PyTorch")


def _fixed_size_error(path: Path, shape) -> ValueError:
    return ValueError(
        f"{path}: exported for a fixed {shape[2]}x{shape[3]} input; export with "
        "tools/export_onnx.py --dynamic to predict tiles of any size"
    )


class OnnxRuntimeModel(nn.Module):
    """An exported .onnx file run by ONNX Runtime on the CPU: (N, 3, H, W) float32 -> the
    exported output. The export must have dynamic height and width for tiles and scales of any
    size (`any_size`; False for the parity check of a fixed-size export)."""

    def __init__(self, path: str | Path, threads: int = 0, any_size: bool = True) -> None:
        super().__init__()
        require("onnxruntime")
        import onnxruntime as ort  # optional dependency: imported only when used

        options = ort.SessionOptions()
        # tiles, scales and flips come in several shapes: a memory pattern planned per shape and
        # an arena that keeps every size it ever held made the peak grow with each new shape
        options.enable_mem_pattern = False
        options.enable_cpu_mem_arena = False
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
        if any_size and any(isinstance(d, int) for d in inputs[0].shape[2:]):
            raise _fixed_size_error(Path(path), inputs[0].shape)
        self.path = Path(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (out,) = self.session.run(None, {"image": image})
        return torch.from_numpy(out)


class OpenVinoModel(nn.Module):
    """An OpenVINO model (.xml + .bin of tools/export_onnx.py --openvino, fp32 or INT8) compiled
    for the CPU: (N, 3, H, W) float32 -> the exported output. `amp` ("" / bf16 / fp16) is the
    precision OpenVINO computes the layers in that are not INT8; `precision` says what it
    chose. `threads` 0 leaves OpenVINO's default (all cores)."""

    def __init__(
        self, path: str | Path, threads: int = 0, amp: str = "", any_size: bool = True
    ) -> None:
        super().__init__()
        require("openvino")
        path = Path(path)
        if amp not in OPENVINO_PRECISION:
            raise ValueError(f"TEST.AMP {amp!r}: OpenVINO takes '', bf16 or fp16")
        if not path.with_suffix(".bin").is_file():
            raise FileNotFoundError(f"{path}: its weights {path.with_suffix('.bin').name} are "
                                    "missing beside it (an OpenVINO model is the .xml and the .bin)")
        with keep_signal_stack():  # the CPU plugin swaps it: lib/utils/signal_stack.py
            self.compiled = _compile_openvino(path, threads, amp, any_size)
        self.request = self.compiled.create_infer_request()
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.request.infer({0: image})[self.compiled.output(0)]
        return torch.from_numpy(out.copy())  # the request reuses its buffer on the next call


def _compile_openvino(path: Path, threads: int, amp: str, any_size: bool):
    """The OpenVINO model at `path` read, checked and compiled for the CPU."""
    import openvino as ov  # optional dependency: imported only when used

    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as err:  # OpenVINO raises RuntimeError with a multi-line C++ trace
        first = (str(err).strip().splitlines() or ["unreadable"])[0]
        raise ValueError(f"{path}: not a model OpenVINO can read ({first})") from None
    inputs = model.inputs
    if len(inputs) != 1 or "image" not in inputs[0].get_names():
        raise ValueError(f"{path}: expected one input named 'image' (tools/export_onnx.py)")
    shape = inputs[0].get_partial_shape()
    if any_size and (shape[2].is_static or shape[3].is_static):
        raise _fixed_size_error(path, [str(d) for d in shape])
    config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[amp], "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(model, "CPU", config)


def load_exported(path: str | Path, threads: int = 0, amp: str = "") -> nn.Module:
    """The runtime for an exported model, by suffix: OnnxRuntimeModel or OpenVinoModel."""
    suffix = Path(str(path)).suffix.lower()
    if suffix == ".onnx":
        return OnnxRuntimeModel(path, threads=threads)
    if suffix == ".xml":
        return OpenVinoModel(path, threads=threads, amp=amp)
    raise ValueError(f"{path}: not an exported model (.onnx for ONNX Runtime, .xml for OpenVINO)")


def inference_model(cfg, model_file, device: torch.device) -> nn.Module:
    """The model every inference tool runs: PyTorch weights (one file, or several as an
    ensemble) loaded strictly and prepared (eval, TEST.FOLD_BN, MODEL.CHANNELS_LAST) on
    `device`, or one exported model (.onnx / .xml) on the CPU with torch's thread count."""
    from lib.models import load_trained, model_files  # the models import nothing from here
    from lib.models.bn_folding import prepare_for_inference

    files = model_files(model_file)
    exported = [f for f in files if is_exported(f)]
    if exported and len(files) > 1:
        raise ValueError(
            "TEST.MODEL_FILE: an ensemble of several files takes .pth weights; export the "
            "ensemble as one model with tools/export_onnx.py TEST.MODEL_FILE a.pth,b.pth"
        )
    if exported:
        if torch.device(device).type != "cpu":
            raise ValueError(f"{exported[0]}: {backend_name(exported[0])} models run on the "
                             "CPU; use --device cpu")
        model = load_exported(exported[0], threads=torch.get_num_threads(), amp=cfg.TEST.AMP)
        logger.info("%s runs %s%s", backend_name(exported[0]), exported[0],
                    f" ({model.precision})" if hasattr(model, "precision") else "")
        return model
    return prepare_for_inference(load_trained(cfg, model_file), cfg, device)

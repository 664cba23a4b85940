"""Measurements behind tools/benchmark.py: inference, training steps, decoding, whole photos.

Every measurement returns a row dict with at least `variant`, `images_per_s`, `latency_ms`
(median over `runs` timed calls after `warmup` untimed ones; the variants' timed calls take
turns, so a busy machine slows them alike) and `peak_mem_mb`. A variant is a
name made of `+`-joined fast paths (`fp32 eager` is none of them: numerically the official
model): `channels_last`, `bf16` / `fp16` (autocast), `bn folded` (inference only),
`compile` (`torch.compile`). A variant that cannot run here gives a row with `skipped` set to
the reason instead of numbers.

Peak memory: on CUDA `torch.cuda.max_memory_allocated` over the timed calls (the first call's,
with cuDNN's algorithm search when CUDNN.BENCHMARK is on, is `first_call_peak_mem_mb`); on CPU the process's peak resident set
(VmHWM in /proc/self/status), reset before each row by writing 5 to /proc/self/clear_refs and
read after that row's warm-up. Variants prepared earlier stay resident (they are timed in turns
later), so `rss_base_mb`, the resident size before the row's first call, is reported alongside.
"""

from __future__ import annotations

import atexit
import copy
import functools
import importlib.metadata
import logging
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lib.core.backends import OnnxRuntimeModel, OpenVinoModel
from lib.core.criterion import build_criterion
from lib.core.export import (
    KEEP_FP32,
    export_onnx,
    export_openvino,
    quantize_int8,
    quantize_openvino,
)
from lib.core.inference import InferenceSettings
from lib.datasets import build_dataset
from lib.datasets.base import ListDataset
from lib.datasets.decode import decode_image, image_size, read_bytes, target_size
from lib.models.bn_folding import fold_batchnorm
from lib.utils.amp import AMP_NAMES, autocast, autocast_dtype, bf16_supported, grad_scaler

__all__ = ["Variant", "parse_variant", "INFER_VARIANTS", "TRAIN_VARIANTS", "PHOTO_VARIANTS",
           "EXPORTED_VARIANTS", "exported_model",
           "PeakMemory", "Case", "environment", "random_image", "calibrate", "infer_case",
           "train_case", "photo_case", "measure", "bench_decode", "bench_samples", "write_test_photo"]

logger = logging.getLogger(__name__)

INFER_VARIANTS = ("fp32 eager", "channels_last", "bf16", "bf16+channels_last",
                  "bn folded+channels_last", "bn folded+bf16", "bn folded+bf16+channels_last",
                  "compile+bn folded+bf16+channels_last")
TRAIN_VARIANTS = ("fp32 eager", "channels_last", "bf16", "bf16+channels_last",
                  "compile+bf16+channels_last")
PHOTO_VARIANTS = ("fp32 eager", "bn folded+bf16+channels_last")
_TOKENS = {"channels_last", "bn folded", "compile", *[k for k in AMP_NAMES if k]}
# exported models on the CPU (tools/export_onnx.py's graph, BatchNorm folded): ONNX Runtime fp32
# or INT8 (static QDQ); OpenVINO fp32, bf16 (its inference precision), INT8 (NNCF) with the
# unquantised head in fp32 or bf16. INT8 calibrates on `calibration` images.
ORT_VARIANTS = ("onnxruntime", "onnxruntime int8")
OPENVINO_VARIANTS = ("openvino", "openvino bf16", "openvino int8", "openvino int8 bf16")
EXPORTED_VARIANTS = ORT_VARIANTS + OPENVINO_VARIANTS
# an INT8 variant may name what it leaves unquantised (tools/export_onnx.py --int8-keep), so
# that keep sets are timed side by side: "openvino int8 keep=ocr_gather+cls_head",
# "openvino int8 keep=none" (every layer INT8); without it, lib.core.export.KEEP_FP32
KEEP_MARK = " keep="


@dataclass(frozen=True)
class Variant:
    """A named combination of fast paths."""

    name: str
    channels_last: bool = False
    amp: str = ""
    fold_bn: bool = False
    compile: bool = False
    int8_keep: tuple[str, ...] = KEEP_FP32  # INT8 variants: name parts left unquantised

    @property
    def base(self) -> str:
        """The name without its keep= part."""
        return self.name.split(KEEP_MARK, 1)[0]

    @property
    def exported(self) -> bool:
        """Run by ONNX Runtime or OpenVINO rather than PyTorch."""
        return self.base in EXPORTED_VARIANTS

    @property
    def int8(self) -> bool:
        return self.exported and "int8" in self.base.split()

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def parse_variant(name: str) -> Variant:
    """`fp32 eager` or `+`-joined tokens: channels_last, bf16, fp16, bn folded, compile."""
    name = name.strip()
    if name == "fp32 eager" or name in EXPORTED_VARIANTS:
        return Variant(name)
    if KEEP_MARK in name:
        base, parts = name.split(KEEP_MARK, 1)
        if base not in EXPORTED_VARIANTS or "int8" not in base.split():
            raise ValueError(f"variant {name!r}: keep= follows an INT8 variant "
                             f"({[v for v in EXPORTED_VARIANTS if 'int8' in v]})")
        keep = () if parts.strip() == "none" else tuple(p.strip() for p in parts.split("+"))
        if not all(keep):
            raise ValueError(f"variant {name!r}: keep= takes '+'-joined layer names or none")
        return Variant(name, int8_keep=keep)
    tokens = {t.strip() for t in name.split("+")}
    unknown = tokens - _TOKENS
    if unknown:
        raise ValueError(f"variant {name!r}: unknown part(s) {sorted(unknown)}; use 'fp32 eager', "
                         f"'+'-joined {sorted(_TOKENS)} or one of {list(EXPORTED_VARIANTS)}")
    if {"bf16", "fp16"} <= tokens:
        raise ValueError(f"variant {name!r}: choose one of bf16 and fp16")
    amp = "bf16" if "bf16" in tokens else "fp16" if "fp16" in tokens else ""
    return Variant(name, "channels_last" in tokens, amp, "bn folded" in tokens, "compile" in tokens)


class PeakMemory:
    """Peak memory since the last `reset()`, in MiB, with the method named in `method`."""

    def __init__(self, device: torch.device):
        self.device = device
        self.resettable = False
        if device.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated (per row)"
        elif Path("/proc/self/status").is_file():
            self.resettable = self._clear_refs()
            self.method = ("VmHWM from /proc/self/status (peak RSS), reset per row via "
                           "/proc/self/clear_refs" if self.resettable else
                           "VmHWM from /proc/self/status (peak RSS since process start)")
        else:
            self.method = "unavailable"

    @staticmethod
    def _clear_refs() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resettable:
            self._clear_refs()

    def peak_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return self._status("VmHWM:")

    def current_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20
        return self._status("VmRSS:")

    def _status(self, key: str) -> float | None:
        if self.method == "unavailable":
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return None


def environment(device: torch.device) -> dict:
    """torch version, device name, threads, python: recorded with every benchmark."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = cpu_model_name()
    return {"torch": torch.__version__, "device": str(device), "device_name": name,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "bf16_native": bf16_supported(device), "cpu_features": cpu_features(),
            **{f"{m}_version": _version_of(m) for m in ("onnxruntime", "openvino", "nncf")
               if _version_of(m)}}


@functools.cache
def _cpuinfo_text() -> str | None:
    """/proc/cpuinfo, read once a process (the model and flags do not change); None where
    unreadable."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


def _cpuinfo_field(key: str) -> str | None:
    """The first /proc/cpuinfo line's value for `key` ("model name", "flags"); None where the
    file is unreadable or has no such line."""
    text = _cpuinfo_text()
    if text is None:
        return None
    return next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith(key)), None)


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (platform's processor name where unreadable)."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


# the extensions that decide which path is fastest (AMX or not, bf16, VNNI for INT8), then the
# baseline vector ones recorded with them
PATH_FEATURES = ("amx_bf16", "amx_int8", "amx_fp16", "avx512_bf16", "avx512_vnni", "avx_vnni")
CPU_FEATURES = (*PATH_FEATURES, "avx512f", "avx2")


def cpu_features() -> list[str]:
    """The CPU's CPU_FEATURES, from /proc/cpuinfo; [] where it is unreadable."""
    flags = (_cpuinfo_field("flags") or "").split()
    return [f for f in CPU_FEATURES if f in flags]


def cpu_description() -> str:
    """One line naming the machine a timing ran on: model, its PATH_FEATURES and the cores, e.g.
    "Intel(R) Xeon(R) Processor (amx_bf16, amx_int8, avx512_bf16, ...), 2 cores"."""
    features = [f for f in cpu_features() if f in PATH_FEATURES]
    return f"{cpu_model_name()} ({', '.join(features) or 'no AMX, bf16 or VNNI'}), {os.cpu_count()} cores"


def _version_of(module: str) -> str:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _row(variant: str, images: int, times: list[float], peak: float | None, **extra) -> dict:
    median = statistics.median(times)
    return {"variant": variant, "images_per_s": images / median, "latency_ms": median * 1e3,
            "peak_mem_mb": peak, "runs_ms": [t * 1e3 for t in times], **extra}


def skipped_row(variant: str, reason: str) -> dict:
    """A row for a variant that could not run, with the reason."""
    return {"variant": variant, "images_per_s": None, "latency_ms": None, "peak_mem_mb": None,
            "skipped": reason}


def random_image(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Photo-like normalised input (N, 3, H, W): smooth random fields plus fine noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, max(1, h // 32), max(1, w // 32), generator=g)
    x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return x + 0.3 * torch.randn(n, 3, h, w, generator=g)


@torch.no_grad()
def calibrate(model: nn.Module, size: tuple[int, int] = (128, 256), passes: int = 3) -> nn.Module:
    """Random weights that give a meaningful argmax: He-initialised convs, BN stats from inputs.

    The official init (N(0, 0.001) convs, unit BN) makes activations vanish, so every pixel gets
    the same class and argmax agreement says nothing. Returns the model in eval mode.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration passes
    model.train()
    for k in range(passes):
        model(random_image(2, *size, seed=100 + k))
    model.eval()
    return model


def _main_output(out) -> torch.Tensor:
    return (out[-1] if isinstance(out, (list, tuple)) else out).float()


def _agreement(out: torch.Tensor, reference: torch.Tensor | None) -> dict:
    if reference is None:
        return {}
    return {"argmax_agree": (out.argmax(1) == reference.argmax(1)).float().mean().item(),
            "max_abs_diff": (out - reference).abs().max().item()}


def _prepared(model: nn.Module, variant: Variant, train: bool) -> tuple[nn.Module, Callable]:
    """A copy of `model` with the variant's layout and folding, and the callable to run."""
    model = copy.deepcopy(model)
    model.train(train)
    if variant.fold_bn:
        fold_batchnorm(model)
    if variant.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, (torch.compile(model) if variant.compile else model)


@dataclass
class Case:
    """One variant made ready to time: `step()` is one call; `outputs` maps a result to a tensor."""

    variant: str
    step: Callable[[], object]
    images: int
    device: torch.device
    output: Callable[[object], torch.Tensor | None] = lambda result: None
    ran_as: str = ""  # what actually ran when it is not what the name says


def _ran_as(variant: Variant, dtype: torch.dtype | None) -> str:
    """'fp32' for a bf16 variant on a device without native bf16 (autocast_dtype ran fp32)."""
    return "fp32 (no native bf16 here)" if variant.amp and not variant.exported and dtype is None \
        else ""


def infer_case(
    model: nn.Module, variant: Variant, x: torch.Tensor, calibration: torch.Tensor | None = None
) -> Case:
    """Eval forward passes of `x` (N, 3, H, W) under the variant."""
    if variant.exported:
        return _exported_case(model, variant, x, calibration)
    device = x.device
    dtype = autocast_dtype(variant.amp, device, key=f"variant {variant.name!r}")
    _, fn = _prepared(model, variant, train=False)
    x = x.contiguous(memory_format=variant.memory_format)

    def forward():
        with torch.no_grad(), autocast(device, dtype):
            return fn(x)

    return Case(variant.name, forward, x.shape[0], device, _main_output, _ran_as(variant, dtype))


def exported_model(model: nn.Module, variant: Variant, height: int, width: int, folder: Path,
                   calibration: torch.Tensor | None = None) -> nn.Module:
    """The variant's runtime (CPU) on `model` exported with dynamic shapes (traced at height x
    width) into `folder`: ONNX Runtime, or OpenVINO converted from the same ONNX graph; INT8
    variants calibrated on `calibration` (N, 3, H, W; default: 8 photo-like random images)."""
    path = Path(folder) / "model.onnx"
    if not path.is_file():  # files already in `folder` are reused (variants of one export)
        export_onnx(model, path, height=height, width=width, dynamic=True)
    int8 = variant.int8
    if int8 and calibration is None:
        calibration = random_image(8, height, width, seed=1)
    threads = torch.get_num_threads()
    # one INT8 model per keep set, shared by the variants that differ only in precision
    stem = "model_int8" + ("" if variant.int8_keep == KEEP_FP32 else
                           "_keep_" + ("-".join(variant.int8_keep) or "none"))
    if variant.base.startswith("openvino"):
        xml = path.with_suffix(".xml")
        path = xml if xml.is_file() else export_openvino(path, xml)
        if int8:
            target = path.with_name(stem + ".xml")
            path = target if target.is_file() else quantize_openvino(
                path, target, calibration, keep_fp32=variant.int8_keep)
        return OpenVinoModel(path, threads=threads, amp="bf16" if "bf16" in variant.base else "")
    if int8:
        target = path.with_name(stem + ".onnx")
        if not target.is_file():
            quantize_int8(path, target, calibration, keep_fp32=variant.int8_keep)
        path = target
    return OnnxRuntimeModel(path, threads=threads)


_EXPORTS: dict[tuple, Path] = {}


def _export_folder(model: nn.Module, height: int, width: int, calibration) -> Path:
    """One folder per (model, traced size, calibration) for the whole run: the variants of one
    export share its files (removed when the process ends)."""
    key = (id(model), height, width, id(calibration))
    if key not in _EXPORTS:
        _EXPORTS[key] = Path(tempfile.mkdtemp(prefix="bench_export_"))
        atexit.register(shutil.rmtree, _EXPORTS[key], True)
    return _EXPORTS[key]


def _exported_case(
    model: nn.Module, variant: Variant, x: torch.Tensor, calibration: torch.Tensor | None
) -> Case:
    """An exported variant (EXPORTED_VARIANTS) on `x`, exported at x's size."""
    if x.device.type != "cpu":
        raise ValueError(f"{variant.name} runs on the CPU (--device cpu)")
    folder = _export_folder(model, x.shape[2], x.shape[3], calibration)
    runtime = exported_model(model, variant, x.shape[2], x.shape[3], folder, calibration)

    def forward():
        with torch.no_grad():
            return runtime(x)

    return Case(variant.name, forward, x.shape[0], x.device, _main_output)


def train_case(model: nn.Module, cfg, variant: Variant, x: torch.Tensor, target: torch.Tensor) -> Case:
    """SGD steps (forward, loss, backward, step) on `x` (N, 3, H, W) and `target` (N, H, W).

    The loss is computed in float32 on the autocast outputs, as the training loop does.
    """
    if variant.fold_bn or variant.exported:
        raise ValueError(f"{variant.name!r} is an inference-only variant")
    device = x.device
    dtype = autocast_dtype(variant.amp, device, key=f"variant {variant.name!r}")
    net, fn = _prepared(model, variant, train=True)
    x = x.contiguous(memory_format=variant.memory_format)
    criterion = build_criterion(cfg).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)
    scaler = grad_scaler(variant.amp, device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            outputs = fn(x)
        outputs = [o.float() for o in outputs] if isinstance(outputs, (list, tuple)) else outputs.float()
        loss = criterion(outputs, target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    return Case(variant.name, step, x.shape[0], device, ran_as=_ran_as(variant, dtype))


def measure(factories: list[tuple[str, Callable[[], Case]]], runs: int, warmup: int,
            memory: PeakMemory, agreement: bool = False) -> list[dict]:
    """Rows for the cases `factories` build, timed round-robin so they share the machine's noise.

    Each case is built and warmed up alone (first call: `first_call_s`, compiling included;
    peak memory over its warm-up, with `rss_base_mb` resident before it), then `runs` rounds
    time one call of every case in turn. With `agreement`, outputs are compared with the first
    case's (argmax agreement, max abs difference).
    """
    cases: list[Case] = []
    rows: dict[str, dict] = {}
    reference = None
    for name, factory in factories:
        try:
            case = factory()
            memory.reset()
            base = memory.current_mb()
            start = time.perf_counter()
            result = case.step()
            _sync(case.device)
            first = time.perf_counter() - start
            for _ in range(max(0, warmup - 1)):
                case.step()
            _sync(case.device)
        except Exception as err:  # a variant that cannot run here is reported, not fatal
            reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
            logger.warning("%s skipped: %s", name, reason)
            rows[name] = skipped_row(name, reason)
            continue
        logger.info("%s: first call %.1f s", name, first)
        rows[name] = {"peak_mem_mb": memory.peak_mb(), "rss_base_mb": base, "first_call_s": first,
                      **({"ran_as": case.ran_as} if case.ran_as else {})}
        out = case.output(result)
        if agreement and out is not None:
            if reference is None:
                reference = out
            else:
                rows[name].update(_agreement(out, reference))
        cases.append(case)
    times: dict[str, list[float]] = {case.variant: [] for case in cases}
    steady: dict[str, float] = {}
    for _ in range(max(1, runs)):
        for case in cases:
            cuda = case.device.type == "cuda"
            if cuda:  # steady-state peak: the first call's includes cuDNN's algorithm search
                memory.reset()
            start = time.perf_counter()
            case.step()
            _sync(case.device)
            times[case.variant].append(time.perf_counter() - start)
            if cuda:
                steady[case.variant] = max(steady.get(case.variant, 0.0), memory.peak_mb())
    for case in cases:
        extra = rows[case.variant]
        if case.variant in steady:
            extra["first_call_peak_mem_mb"] = extra["peak_mem_mb"]
            extra["peak_mem_mb"] = steady[case.variant]
        rows[case.variant] = _row(case.variant, case.images, times[case.variant],
                                  extra.pop("peak_mem_mb"), **extra)
    return [rows[name] for name, _ in factories]


def write_test_photo(path: str | Path, height: int = 3078, width: int = 5472, seed: int = 0) -> Path:
    """A photo-sized JPEG (quality 95) with sky, ground, texture and wires: decoding costs like a photo."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 64 + 1, width // 64 + 1, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    image = cv2.add(image, rng.integers(0, 24, image.shape, dtype=np.uint8))
    for k in range(6):
        y = int(height * (0.2 + 0.1 * k))
        cv2.line(image, (0, y), (width - 1, y + 200 * k), (30, 30, 30), 6)
    path = Path(path)
    Image.fromarray(image).save(path, quality=95)
    return path


def _seed_decode(path: Path, size: tuple[int, int]) -> np.ndarray:
    """The seed's way: Pillow decodes the photo to check it, OpenCV decodes it again, then resize."""
    with Image.open(path) as img:
        img.convert("RGB").load()
    image = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def bench_decode(path: Path, base_size: int, scale_factor: int, samples: int,
                 memory: PeakMemory, seed: int = 0) -> list[dict]:
    """Samples/s of one worker decoding `path` at the training's random scales, three ways.

    Scales are `0.5 + randint(0, scale_factor) / 10` of `base_size` on the long side (the same
    sequence for each way): `seed decode`, `decode once` (one full OpenCV decode + resize) and
    `reduced decode` (libjpeg DCT scaling when the target is half the photo or less).
    """
    width, height = image_size(read_bytes(path), path)
    rng = random.Random(seed)
    sizes = [target_size(width, height, int(base_size * (0.5 + rng.randint(0, scale_factor) / 10) + 0.5))
             for _ in range(samples)]
    ways = {
        "seed decode": lambda s: _seed_decode(path, s),
        "decode once": lambda s: cv2.resize(decode_image(path), s, interpolation=cv2.INTER_LINEAR),
        "reduced decode": lambda s: decode_image(path, s),
    }
    rows = []
    for name, fn in ways.items():
        memory.reset()
        fn(sizes[0])  # warm-up: file cache, codec tables
        times = []
        for s in sizes:
            start = time.perf_counter()
            out = fn(s)
            times.append(time.perf_counter() - start)
            assert out.shape[:2] == (s[1], s[0])
        rows.append(_row(name, 1, times, memory.peak_mb(), photo=f"{width}x{height}",
                         base_size=base_size))
    return rows


def bench_samples(path: Path, cfg, samples: int, memory: PeakMemory, workdir: Path,
                  seed: int = 0) -> tuple[list[dict], int]:
    """Training samples/s of one worker on `path` (crop TRAIN.IMAGE_SIZE, the training's random
    scales, a wire label of the photo's size), three ways, and the cache's bytes for the photo.

    `sample, reduced decode`: the uncached dataset; `sample, cache first epoch`: the
    DATASET.CACHE_DIR dataset building the entry each time (decode every level, write);
    `sample, cache later epochs`: reading the entry back. The samples of the three are checked
    to be identical.
    """
    width, height = image_size(read_bytes(path), path)
    label = np.zeros((height, width), np.uint8)
    for k in range(4):  # a few wires, so that the label is not empty
        cv2.line(label, (0, height * (k + 1) // 6), (width - 1, height * (k + 2) // 6), 1, 3)
    Image.fromarray(label).save(workdir / "label.png")
    (workdir / "list.lst").write_text(f"{path.resolve()}\t{(workdir / 'label.png').resolve()}\n")
    cache_dir = workdir / "cache"

    def dataset(cache: Path | None) -> ListDataset:  # the training set the config builds
        settings = cfg.clone()
        settings.defrost()
        settings.DATASET.ROOT = str(workdir)
        settings.DATASET.TRAIN_SET = "list.lst"
        settings.DATASET.CACHE_DIR = str(cache) if cache else ""
        return build_dataset(settings, "train")

    def cold(ds: ListDataset):
        shutil.rmtree(cache_dir, ignore_errors=True)
        cache_dir.mkdir()
        return ds[0]

    ways = {"sample, reduced decode": (dataset(None), lambda ds: ds[0]),
            "sample, cache first epoch": (dataset(cache_dir), cold),
            "sample, cache later epochs": (dataset(cache_dir), lambda ds: ds[0])}
    rows, outputs = [], []
    for name, (ds, fn) in ways.items():
        memory.reset()
        random.seed(seed + 1)
        fn(ds)  # warm-up (and, for the later epochs, the entry)
        random.seed(seed)
        times, outs = [], []
        for _ in range(samples):
            start = time.perf_counter()
            outs.append(fn(ds))
            times.append(time.perf_counter() - start)
        outputs.append(outs)
        rows.append(_row(name, 1, times, memory.peak_mb(), photo=f"{width}x{height}",
                         base_size=cfg.TRAIN.BASE_SIZE, crop=list(cfg.TRAIN.IMAGE_SIZE)))
    for outs in outputs[1:]:
        for (x0, y0, *_), (x1, y1, *_) in zip(outputs[0], outs):
            if not (torch.equal(x0, x1) and torch.equal(y0, y1)):
                raise AssertionError("cached samples differ from the uncached ones")
    return rows, ways["sample, cache later epochs"][0].cache.size_bytes()


def photo_case(model: nn.Module, cfg, variant: Variant, image: torch.Tensor, scales: list[float],
               flip: bool, window_batch: int) -> Case:
    """Whole-photo multi-scale inference (lib.core.inference) of `image` (1, 3, H, W); an
    exported variant is exported at the TEST.IMAGE_SIZE window (dynamic) and runs on the CPU."""
    device = next(model.parameters()).device
    crop_w, crop_h = cfg.TEST.IMAGE_SIZE
    if variant.exported:
        if device.type != "cpu":
            raise ValueError(f"{variant.name} runs on the CPU (--device cpu)")
        fn = exported_model(model, variant, crop_h, crop_w,
                            _export_folder(model, crop_h, crop_w, None))
        amp, dtype = "", None  # the runtime's own precision
    else:
        dtype = autocast_dtype(variant.amp, device, key=f"variant {variant.name!r}")
        amp = {None: "", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
        _, fn = _prepared(model, variant, train=False)

    settings = replace(InferenceSettings.from_cfg(cfg), scales=scales, flip=flip,
                       window_batch=window_batch, amp=amp,
                       channels_last=variant.channels_last)
    return Case(variant.name, lambda: settings.predict(fn, image), 1, device,
                ran_as=_ran_as(variant, dtype))

"""Mixed precision and memory-format fast paths, as small functions the train and test loops call.

`TRAIN.AMP` / `TEST.AMP` name an autocast dtype: "" (fp32, the official numerics), "bf16"
(CPUs with native bf16 and CUDA GPUs that have it) or "fp16" (CUDA only, with a GradScaler when
training). Typical training step::

    dtype = autocast_dtype(cfg.TRAIN.AMP, device)
    scaler = grad_scaler(cfg.TRAIN.AMP, device)       # disabled unless fp16 on CUDA
    images = to_device(images, device, channels_last=cfg.MODEL.CHANNELS_LAST)
    with autocast(device, dtype):
        loss = criterion(model(images), labels)
    scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = ["AMP_NAMES", "autocast", "autocast_dtype", "bf16_supported", "grad_scaler", "to_device"]

logger = logging.getLogger(__name__)

AMP_NAMES = {"": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_WARNED: set[tuple[str, str]] = set()  # (key, device) whose bf16 fall-back was logged


def _device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def bf16_supported(device: torch.device | str) -> bool:
    """True when `device` runs bfloat16 natively (CUDA: Ampere or later; CPU: AVX512-BF16 or AMX)."""
    device = _device(device)
    if device.type == "cuda":
        # is_bf16_supported() alone also counts emulation (V100, T4), slower than fp32
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(
            including_emulation=False
        )
    if device.type == "cpu":
        return _cpu_has_native_bf16()
    return False


def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16. oneDNN also reports bf16 on plain AVX-512 (Skylake to Ice Lake),
    where it emulates it: 1.85x slower than fp32 for a W18-Small training step on a 2-core Ice
    Lake Xeon, so that counts as no."""
    try:
        found = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # a torch without it: count as no
        return False
    return bool(found.get("avx512_bf16") or found.get("amx_bf16"))


def autocast_dtype(amp: str, device: torch.device | str, key: str = "AMP") -> torch.dtype | None:
    """The autocast dtype for config value `amp` on `device`, or None for fp32.

    Raises ValueError (naming `key`) for an unknown value or fp16 off CUDA. bf16 on a device
    without native support falls back to fp32 with a warning: emulated bf16 is slower than fp32.
    """
    if amp not in AMP_NAMES:
        raise ValueError(f"{key} is {amp!r}; known: {sorted(AMP_NAMES)}")
    device = _device(device)
    dtype = AMP_NAMES[amp]
    if dtype is torch.float16 and device.type != "cuda":
        raise ValueError(f"{key} fp16 needs a CUDA device (got {device.type}); use bf16 on CPU")
    if dtype is torch.bfloat16 and not bf16_supported(device):
        if (key, str(device)) not in _WARNED:  # once per key and device, not per batch
            _WARNED.add((key, str(device)))
            logger.warning("%s bf16: %s has no native bfloat16; running fp32", key, device)
        return None
    return dtype


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> AbstractContextManager:
    """`torch.autocast` for `device` and `dtype`, or a no-op context when `dtype` is None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(_device(device).type, dtype=dtype)


def grad_scaler(amp: str, device: torch.device | str) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 on CUDA (disabled, it passes losses and steps through)."""
    device = _device(device)
    enabled = amp == "fp16" and device.type == "cuda"
    return torch.amp.GradScaler(device.type, enabled=enabled)


def to_device(x: torch.Tensor, device: torch.device | str, channels_last: bool = False) -> torch.Tensor:
    """Copy a batch to `device` (non-blocking on CUDA: pair with pinned loader memory).

    `channels_last` applies to 4-D tensors only, so labels can go through the same call.
    """
    device = _device(device)
    x = x.to(device, non_blocking=device.type == "cuda")
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x

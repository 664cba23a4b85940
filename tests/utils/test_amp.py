"""Autocast dtype resolution, grad scaler and device-copy helpers."""

from __future__ import annotations

import logging
from contextlib import nullcontext

import pytest
import torch

from lib.utils import amp
from lib.utils.amp import autocast, autocast_dtype, grad_scaler, to_device


def test_fp32_is_no_autocast():
    assert autocast_dtype("", "cpu") is None
    assert isinstance(autocast("cpu", None), nullcontext)


def test_unknown_amp_value_names_the_key():
    with pytest.raises(ValueError, match="TEST.AMP"):
        autocast_dtype("fp8", "cpu", key="TEST.AMP")


def test_fp16_off_cuda_is_refused():
    with pytest.raises(ValueError, match="CUDA"):
        autocast_dtype("fp16", torch.device("cpu"))


def test_bf16_falls_back_to_fp32_without_native_support(monkeypatch, caplog):
    monkeypatch.setattr(amp, "bf16_supported", lambda device: False)
    monkeypatch.setattr(amp, "_WARNED", set())
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # e.g. once per tile batch: the fall-back is said once
            assert autocast_dtype("bf16", "cpu", "TEST.AMP") is None
    assert caplog.text.count("TEST.AMP bf16") == 1


@pytest.mark.parametrize("flags, native", [
    ({}, False),                                  # AVX-512 only: oneDNN emulates bf16
    ({"avx512_bf16": True}, True),                # Cooper Lake, Zen 4
    ({"amx_bf16": True}, True),                   # Sapphire Rapids and later
])
def test_cpu_bf16_counts_only_native_instructions(monkeypatch, flags, native):
    caps = {"avx512_f": True, "avx512_bf16": False, "amx_bf16": False, **flags}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps, raising=False)
    # what oneDNN says on plain AVX-512, where it runs bf16 by emulation
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert amp.bf16_supported("cpu") is native
    monkeypatch.setattr(amp, "_WARNED", set())
    assert autocast_dtype("bf16", "cpu") is (torch.bfloat16 if native else None)


@pytest.mark.skipif(not amp.bf16_supported("cpu"), reason="this CPU has no native bfloat16")
def test_bf16_autocast_runs_convolutions_in_bf16():
    dtype = autocast_dtype("bf16", "cpu")
    assert dtype is torch.bfloat16
    conv = torch.nn.Conv2d(3, 4, 3)
    with autocast("cpu", dtype):
        assert conv(torch.randn(1, 3, 8, 8)).dtype is torch.bfloat16


def test_grad_scaler_is_enabled_only_for_fp16_on_cuda():
    assert not grad_scaler("", "cpu").is_enabled()
    assert not grad_scaler("bf16", "cpu").is_enabled()
    if torch.cuda.is_available():
        assert grad_scaler("fp16", "cuda").is_enabled()
        assert not grad_scaler("bf16", "cuda").is_enabled()


def test_disabled_scaler_steps_like_plain_sgd():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3)
    opt_a, opt_b = torch.optim.SGD(a.parameters(), 0.1), torch.optim.SGD(b.parameters(), 0.1)
    scaler = grad_scaler("", "cpu")
    scaler.scale(a(x).sum()).backward()
    scaler.step(opt_a)
    scaler.update()
    b(x).sum().backward()
    opt_b.step()
    assert torch.equal(a.weight, b.weight)


def test_to_device_makes_images_channels_last_and_leaves_labels():
    images, labels = torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)
    out = to_device(images, "cpu", channels_last=True)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, images)
    assert to_device(labels, "cpu", channels_last=True).dim() == 3


def test_emulated_bf16_on_an_old_gpu_falls_back_to_fp32(monkeypatch):
    # V100 / T4: torch.cuda.is_bf16_supported() is True by emulation, False natively
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation
    )
    assert amp.bf16_supported("cuda") is False
    assert autocast_dtype("bf16", "cuda") is None

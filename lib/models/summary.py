"""Model size and cost: parameters and GFLOPs for an input size, via torch's FLOP counter."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_gflops(model: nn.Module, height: int, width: int) -> float:
    """GFLOPs of one eval-mode forward pass on a (1, 3, height, width) input.

    One multiply-add counts as 2 FLOPs (torch's convention); papers that count
    multiply-adds report half of this. The pass runs on the meta device (shapes only, no
    arithmetic, no memory): instant at any size, and the model's own weights stay where they
    are, so a training does not wait for a 2048x1024 CPU forward before it starts.
    """
    was_training = model.training
    model.eval()
    meta = {
        name: torch.empty_like(t, device="meta")
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    }
    x = torch.zeros(1, 3, height, width, device="meta", dtype=next(model.parameters()).dtype)
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            functional_call(model, meta, (x,), strict=False)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def model_summary(model: nn.Module, height: int, width: int) -> str:
    """One line: class, parameters (M) and GFLOPs at height x width."""
    params = count_parameters(model) / 1e6
    gflops = count_gflops(model, height, width)
    return (f"{type(model).__name__}: {params:.2f} M parameters, {gflops:.1f} GFLOPs "
            f"(2 per multiply-add) at 1x3x{height}x{width}")

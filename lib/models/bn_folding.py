"""Inference-time model preparation: BatchNorm folded into the convolution before it.

In eval mode a BatchNorm2d is a per-channel affine map, so `bn(conv(x))` equals one convolution
with scaled weights and a shifted bias. Folding removes a full pass over every activation map.

A BatchNorm2d folds into a Conv2d when the model applies it directly to that convolution's
output, which this module recognises in two shapes (all that HRNet and OCR use):

- consecutive items of an `nn.Sequential` (`conv_bn`, transitions, fuse layers, `downsample`,
  `aux_head`, `conv3x3_ocr`), including a BatchNorm that opens the nested Sequential right after
  the convolution (OCR's `Conv2d, Sequential(BatchNorm2d, ReLU)` units);
- attribute pairs `convK` / `bnK` of the classes in `PAIRED_ATTRIBUTE_CLASSES`, whose forward
  computes `bnK(convK(x))` (the residual blocks and the stem).

Folded BatchNorms become `nn.Identity`, so the folded model's state dict has no `bn*` keys:
fold a loaded model, never a model you will save or train.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from lib.models.hrnet import BasicBlock, Bottleneck, HRNetBackbone

__all__ = ["fold_batchnorm", "count_batchnorms", "prepare_for_inference", "PAIRED_ATTRIBUTE_CLASSES",
           "FOLDABLE_NORMS"]

logger = logging.getLogger(__name__)

# the normalisations that fold: BatchNorm2d and SyncBatchNorm (what a distributed CUDA training
# converts BatchNorm2d to; in eval mode both are the same per-channel affine map)
FOLDABLE_NORMS: tuple[type, ...] = (nn.BatchNorm2d, nn.SyncBatchNorm)

# classes whose forward applies bnK straight to convK's output (K = 1, 2, 3)
PAIRED_ATTRIBUTE_CLASSES: tuple[type, ...] = (BasicBlock, Bottleneck, HRNetBackbone)


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Rewrite `conv` in place so that conv(x) == bn(conv(x)) for bn in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics (track_running_stats=False)")
    # float64 keeps the folded weights as close as float32 allows to the two-step result
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    new_bias = (bias - bn.running_mean.double()) * scale + bn.bias.double()
    dtype = conv.weight.dtype
    weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    conv.weight = nn.Parameter(weight.to(dtype).contiguous(memory_format=_format_of(conv.weight)))
    conv.bias = nn.Parameter(new_bias.to(dtype))


def _format_of(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _fold_sequential(seq: nn.Sequential) -> int:
    folded = 0
    items = list(seq._modules.items())
    for (_, first), (name, second) in zip(items, items[1:]):
        if not isinstance(first, nn.Conv2d):
            continue
        if isinstance(second, FOLDABLE_NORMS):
            _fold_into(first, second)
            seq._modules[name] = nn.Identity()
            folded += 1
        elif (
            isinstance(second, nn.Sequential)
            and len(second)
            and isinstance(second[0], FOLDABLE_NORMS)
        ):
            _fold_into(first, second[0])
            second._modules[next(iter(second._modules))] = nn.Identity()
            folded += 1
    return folded


def _fold_pairs(module: nn.Module) -> int:
    folded = 0
    for k in (1, 2, 3):
        conv, bn = getattr(module, f"conv{k}", None), getattr(module, f"bn{k}", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, FOLDABLE_NORMS):
            _fold_into(conv, bn)
            setattr(module, f"bn{k}", nn.Identity())
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d / SyncBatchNorm that directly follows a Conv2d into it; returns
    `model` (in place).

    The model is put in eval mode (folding uses the running statistics). BatchNorms that do not
    follow a convolution are left as they are, and a warning says how many.
    """
    model.eval()
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            folded += _fold_sequential(module)
        elif isinstance(module, PAIRED_ATTRIBUTE_CLASSES):
            folded += _fold_pairs(module)
    left = count_batchnorms(model)
    logger.debug("folded %d BatchNorm layers (%d left)", folded, left)
    if left:
        logger.warning(
            "BatchNorm folding: %d BatchNorm layers are not in a recognised Conv2d + BatchNorm "
            "pattern and stay as they are",
            left,
        )
    return model


def count_batchnorms(model: nn.Module) -> int:
    """Number of BatchNorm modules in `model` (0 after folding a HRNet / OCR model)."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def prepare_for_inference(model: nn.Module, cfg, device: torch.device | str | None = None) -> nn.Module:
    """Eval mode, then `TEST.FOLD_BN` folding and `MODEL.CHANNELS_LAST` layout; returns the model.

    Moves the model to `device` when given. Inputs should then be made channels_last too
    (`x.contiguous(memory_format=torch.channels_last)`), though convolutions convert them anyway.
    """
    model.eval()
    if device is not None:
        model.to(device)
    if cfg.TEST.FOLD_BN:
        fold_batchnorm(model)
    if cfg.MODEL.CHANNELS_LAST:
        model.to(memory_format=torch.channels_last)
    return model

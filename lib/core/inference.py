"""Official Cityscapes-style multi-scale, flip and sliding-window inference, batched.

One function replaces the per-dataset copies of the official code. Semantics (fixture README):
for each scale the image is resized with cv2 INTER_LINEAR so its long side is
int(base_size * scale + 0.5); scales <= 1 run on the whole image, larger ones slide a
crop-size window with stride = crop size (windows past the border shifted back inside) and
average overlapping window predictions. A network call takes output `output_index`, upsamples
it bilinearly to its input size, averages with the flipped prediction when `flip` is on, and
returns exp() of that. Each scale is upsampled to the original size and the scales are summed.

Memory stays bounded for large photos: the network sees at most `window_batch` crops (or the
whole image resized to base_size * scale) at a time, and only the running sum over scales is
kept at the original resolution.

`fuse` (TEST.SCALE_FUSE, ours) decides how the scales combine: "sum" is the official sum of
exp-logits; "wire_max" is for thin structures, a wire seen at any scale is a wire: each wire
class's probability is its largest over the scales, the other classes share the rest in
proportion to their mean probability. With one scale both are the softmax.

`InferenceSettings` holds all of these, built once from the config (`from_cfg`); its
`predict` is `multi_scale_inference` with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.config import FUSE_MODES, wire_classes
from lib.utils.amp import autocast, autocast_dtype
from lib.utils.runtime import device_of


def resize_long_side(image: np.ndarray, long_size: int) -> np.ndarray:
    """Official `multi_scale_aug` without cropping: an HWC float image to long side `long_size`."""
    h, w = image.shape[:2]
    if h > w:
        new_h, new_w = long_size, int(w * long_size / h + 0.5)
    else:
        new_w, new_h = long_size, int(h * long_size / w + 0.5)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def sliding_windows(
    height: int, width: int, crop_h: int, crop_w: int
) -> list[tuple[int, int, int, int]]:
    """(h0, h1, w0, w1) of the official window grid: stride = crop, last windows shifted inside."""
    rows = int(math.ceil((height - crop_h) / crop_h)) + 1
    cols = int(math.ceil((width - crop_w) / crop_w)) + 1
    boxes = []
    for r in range(max(rows, 1)):
        for c in range(max(cols, 1)):
            h1 = min(r * crop_h + crop_h, height)
            w1 = min(c * crop_w + crop_w, width)
            boxes.append((max(h1 - crop_h, 0), h1, max(w1 - crop_w, 0), w1))
    return boxes


def batch_scores(
    model: nn.Module,
    images: torch.Tensor,
    *,
    flip: bool,
    align_corners: bool = True,
    output_index: int = -1,
    amp: str = "",
) -> torch.Tensor:
    """Official `inference` for a batch: (N, 3, h, w) -> exp of the (flip-averaged) logits (N, C, h, w).

    With `flip` the image and its mirror go through the network in one batch.
    """
    n, size = images.shape[0], images.shape[-2:]
    batch = torch.cat([images, images.flip(-1)]) if flip else images
    with autocast(batch.device, autocast_dtype(amp, batch.device, "TEST.AMP")):
        out = model(batch)
    if isinstance(out, (list, tuple)):
        out = out[output_index]
    out = F.interpolate(out.float(), size=size, mode="bilinear", align_corners=align_corners)
    if flip:
        out = (out[:n] + out[n:].flip(-1)) * 0.5
    return out.exp()


class ScaleFusion:
    """Combines per-scale (N, C, H, W) exp-logits of one image into its fused scores.

    mode "sum": the official running sum. mode "wire_max": a running maximum of each wire
    class's probability and a running sum of the other classes' probabilities; `result()`
    returns probabilities (they sum to 1 over the classes), which argmax, `wire_probability`
    and the thresholds read like exp-logits.
    """

    def __init__(self, mode: str = "sum", wire_classes: Sequence[int] = (1,)):
        if mode not in FUSE_MODES:
            raise ValueError(f"scale fusion {mode!r}; use one of {', '.join(FUSE_MODES)}")
        self.mode, self.wire = mode, [int(c) for c in wire_classes]
        self.total: torch.Tensor | None = None  # sum: exp-logits; wire_max: other classes' sum
        self.wire_max: torch.Tensor | None = None

    def add(self, scores: torch.Tensor) -> None:
        if self.mode == "sum":
            self.total = scores if self.total is None else self.total + scores
            return
        prob = scores / scores.sum(1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
        wire = prob[:, self.wire]
        self.wire_max = wire if self.wire_max is None else torch.maximum(self.wire_max, wire)
        self.total = prob if self.total is None else self.total + prob

    def result(self) -> torch.Tensor:
        if self.total is None:
            raise ValueError("no scale was added")
        if self.mode == "sum":
            return self.total
        others = [c for c in range(self.total.shape[1]) if c not in self.wire]
        out = torch.empty_like(self.total)
        wire_sum = self.wire_max.sum(1, keepdim=True)
        wire_share = wire_sum.clamp(max=1.0)
        out[:, self.wire] = self.wire_max * (wire_share / wire_sum.clamp_min(1e-12))
        if others:
            rest = self.total[:, others]
            rest_sum = rest.sum(1, keepdim=True)
            even = torch.full_like(rest, 1.0 / len(others))
            share = torch.where(rest_sum > 0, rest / rest_sum.clamp_min(1e-12), even)
            out[:, others] = share * (1.0 - wire_share)
        return out


@torch.no_grad()
def multi_scale_inference(
    model: nn.Module,
    image: torch.Tensor,
    *,
    num_classes: int,
    scales: Sequence[float],
    flip: bool,
    base_size: int,
    crop_size: Sequence[int],
    align_corners: bool = True,
    output_index: int = -1,
    window_batch: int = 4,
    amp: str = "",
    memory_format: torch.memory_format = torch.contiguous_format,
    fuse: str = "sum",
    wire_classes: Sequence[int] = (1,),
) -> torch.Tensor:
    """Sum over `scales` of the official per-scale prediction, on the model's device.

    image: normalised (1, 3, H, W) float tensor (any device); crop_size: (h, w).
    Returns (1, num_classes, H, W) float32 (exp-logits summed over scales, as officially; with
    `fuse="wire_max"` probabilities fused as the module docstring says).
    The model is expected to be in eval mode.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(
            f"multi_scale_inference expects a (1, 3, H, W) image, got {tuple(image.shape)}"
        )
    device = device_of(model, image.device)
    _, _, ori_h, ori_w = image.shape
    crop_h, crop_w = int(crop_size[0]), int(crop_size[1])
    hwc = image[0].permute(1, 2, 0).float().cpu().numpy()
    fusion = ScaleFusion(fuse, wire_classes)
    kwargs = dict(flip=flip, align_corners=align_corners, output_index=output_index, amp=amp)

    for scale in scales:
        scaled = resize_long_side(hwc, int(base_size * scale + 0.5))
        height, width = scaled.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))[None].to(device)
        x = x.contiguous(memory_format=memory_format)
        if scale <= 1.0:
            preds = batch_scores(model, x, **kwargs)
        else:
            preds = torch.zeros((1, num_classes, height, width), device=device)
            count = torch.zeros((1, 1, height, width), device=device)
            boxes = sliding_windows(height, width, crop_h, crop_w)
            for start in range(0, len(boxes), max(1, window_batch)):
                group = boxes[start : start + max(1, window_batch)]
                # windows of one batch must share a size; they all do unless the image is
                # smaller than the crop, where there is a single window anyway
                crops = torch.cat([x[:, :, h0:h1, w0:w1] for h0, h1, w0, w1 in group])
                out = batch_scores(model, crops, **kwargs)
                for k, (h0, h1, w0, w1) in enumerate(group):
                    preds[:, :, h0:h1, w0:w1] += out[k : k + 1]
                    count[:, :, h0:h1, w0:w1] += 1
            preds /= count
        fusion.add(
            F.interpolate(preds, (ori_h, ori_w), mode="bilinear", align_corners=align_corners)
        )
    return fusion.result()


@dataclass(frozen=True)
class InferenceSettings:
    """How a photo is predicted (`multi_scale_inference`'s settings), built once per run.

    scales, flip, base_size, crop_size (h, w), window_batch, amp, fuse: TEST.SCALE_LIST,
    FLIP_TEST, BASE_SIZE, IMAGE_SIZE, WINDOW_BATCH, AMP, SCALE_FUSE; align_corners,
    channels_last: MODEL.*; output_index: TEST.OUTPUT_INDEX; wire_classes: WIRE.CLASSES (the
    classes `fuse="wire_max"` and the wire thresholds read).
    """

    num_classes: int
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    base_size: int = 2048
    crop_size: tuple[int, int] = (512, 1024)
    align_corners: bool = True
    output_index: int = -1
    window_batch: int = 4
    amp: str = ""
    channels_last: bool = False
    fuse: str = "sum"
    wire_classes: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:  # lists from a config or a caller, kept as tuples
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        object.__setattr__(self, "crop_size", (int(self.crop_size[0]), int(self.crop_size[1])))
        object.__setattr__(self, "wire_classes", tuple(int(c) for c in self.wire_classes))

    @classmethod
    def from_cfg(cls, cfg) -> InferenceSettings:
        """The settings of the TEST section (and MODEL.ALIGN_CORNERS / CHANNELS_LAST, WIRE)."""
        crop_w, crop_h = cfg.TEST.IMAGE_SIZE
        return cls(
            num_classes=cfg.DATASET.NUM_CLASSES,
            scales=tuple(cfg.TEST.SCALE_LIST),
            flip=cfg.TEST.FLIP_TEST,
            base_size=cfg.TEST.BASE_SIZE,
            crop_size=(crop_h, crop_w),
            align_corners=cfg.MODEL.ALIGN_CORNERS,
            output_index=cfg.TEST.OUTPUT_INDEX,
            window_batch=cfg.TEST.WINDOW_BATCH,
            amp=cfg.TEST.AMP,
            channels_last=cfg.MODEL.CHANNELS_LAST,
            fuse=cfg.TEST.SCALE_FUSE,
            wire_classes=tuple(wire_classes(cfg)),
        )

    def at_zoom(self, zoom: float) -> InferenceSettings:
        """For photos zoomed by `zoom` (TEST.ZOOM): a photo from further away (zoom < 1) is
        predicted at its own, smaller size (base size and window shrunk by `zoom`)."""
        if zoom >= 1:
            return self
        crop_h, crop_w = self.crop_size
        return replace(self, base_size=max(1, round(self.base_size * zoom)),
                       crop_size=(max(1, round(crop_h * zoom)), max(1, round(crop_w * zoom))))

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def predict(self, model: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """`multi_scale_inference` of a normalised (1, 3, H, W) image with these settings:
        (1, num_classes, H, W) float32 fused scores on the model's device."""
        return multi_scale_inference(
            model, image, num_classes=self.num_classes, scales=self.scales, flip=self.flip,
            base_size=self.base_size, crop_size=self.crop_size, align_corners=self.align_corners,
            output_index=self.output_index, window_batch=self.window_batch, amp=self.amp,
            memory_format=self.memory_format, fuse=self.fuse, wire_classes=self.wire_classes,
        )  # fmt: skip

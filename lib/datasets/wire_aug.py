"""Augmentations that matter for thin wires, all opt-in (TRAIN.AUG_* keys; 0 = off).

Applied to a training crop after the official scale / crop / brightness steps and before the
flip, in this order: rotation by any angle (geometry: image and label together), pasted
generated wires (the label gains them), colour jitter, blur, noise, JPEG re-encoding (the
degradations also touch the pasted wires, as a camera would). Scale changes that vary the wire
width 3x are the official random scale (TRAIN.MULTI_SCALE with SCALE_FACTOR 10: 0.5x-1.5x).

Randomness comes from one `random.Random` per sample (the dataset's seeded `random` state), so
a training with the same seed sees the same crops, and an exact resume stays exact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import cv2
import numpy as np

from lib.config import wire_classes
from lib.datasets.annotations import ImageAnnotation, Shape, rasterise
from lib.datasets.wire_drawing import catenary, contrasting_grey, draw_wire, wire_polygon

__all__ = ["WireAugment", "wire_augment_from_cfg", "paste_wires"]


def _rotate(image: np.ndarray, label: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = label.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), degrees, 1.0)
    # reflected borders keep the corners realistic, and wires reflect with their labels
    image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
    label = cv2.warpAffine(np.ascontiguousarray(label, dtype=np.int16), matrix, (w, h),
                           flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    return image, label


def paste_wires(
    image: np.ndarray,
    label: np.ndarray,
    rnd: random.Random,
    wire_class: int = 1,
    ignore_label: int = 255,
    widths: tuple[float, float] = (1.0, 4.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Draw 1-3 bundles of 1-3 sagging, anti-aliased wires onto an RGB uint8 crop.

    Wires are a little darker or brighter than what lies behind them (contrast 15-70 grey
    levels, the range of real photos), `widths` pixels wide; their polygons become
    `wire_class` in the label (rasterised as the converter does), except where the label is
    `ignore_label`.
    """
    h, w = label.shape[:2]
    image = image.copy()
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    shapes = []
    for _ in range(rnd.randint(1, 3)):
        angle = rnd.uniform(0, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        centre = np.array([rnd.uniform(0, w), rnd.uniform(0, h)])
        reach = float(np.hypot(w, h))
        p0, p1 = centre - reach * direction, centre + reach * direction
        sag = rnd.uniform(0.0, 0.08) * 2 * reach
        spacing = rnd.uniform(6, 30)
        width = rnd.uniform(*widths)
        for k in range(rnd.randint(1, 3)):
            line = catenary(p0 + k * spacing * normal, p1 + k * spacing * normal, sag, n=96)
            polygon = wire_polygon(line, width)
            value = contrasting_grey(grey, line, rnd.uniform(15, 70), rnd.random, 128)
            tint = [value + rnd.gauss(0, 4) for _ in range(3)]
            draw_wire(image, polygon, tuple(float(np.clip(v, 0, 255)) for v in tint))
            shapes.append(Shape("polygon", polygon, "wire"))
    # labelled as the converter labels the generator's polygons
    mask = rasterise(ImageAnnotation("pasted wires", "", shapes), w, h, {"wire": 1})
    label = label.copy()
    label[(mask > 0) & (label != ignore_label)] = wire_class
    return image, label


@dataclass(frozen=True)
class WireAugment:
    """The opt-in wire augmentations; `__call__(image, label, rnd)` -> (image, label)."""

    rotate: float = 0.0  # largest rotation in degrees (180: any angle)
    color_jitter: float = 0.0  # strength s: brightness +-64s, contrast and saturation x(1 +- s)
    blur: float = 0.0  # probability of a Gaussian blur (sigma 0.3-1.5 px)
    noise: float = 0.0  # probability of Gaussian noise (std 2-10 grey levels)
    jpeg: float = 0.0  # probability of JPEG re-encoding (quality 30-90)
    paste_wires: float = 0.0  # probability of pasting generated wires (label updated)
    wire_class: int = 1
    ignore_label: int = 255

    @property
    def active(self) -> bool:
        return any((self.rotate, self.color_jitter, self.blur, self.noise, self.jpeg,
                    self.paste_wires))

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rnd: random.Random
    ) -> tuple[np.ndarray, np.ndarray]:
        dtype = label.dtype
        if self.rotate:
            image, label = _rotate(image, label, rnd.uniform(-self.rotate, self.rotate))
        if self.paste_wires and rnd.random() < self.paste_wires:
            image, label = paste_wires(image, label, rnd, self.wire_class, self.ignore_label)
        if self.color_jitter:
            s = self.color_jitter
            x = image.astype(np.float32)
            grey = x.mean(axis=2, keepdims=True)
            x = grey + (x - grey) * rnd.uniform(1 - s, 1 + s)  # saturation
            x = (x - x.mean()) * rnd.uniform(1 - s, 1 + s) + x.mean()  # contrast
            x = x + rnd.uniform(-64 * s, 64 * s)  # brightness
            image = np.clip(x, 0, 255).astype(np.uint8)
        if self.blur and rnd.random() < self.blur:
            image = cv2.GaussianBlur(image, (0, 0), rnd.uniform(0.3, 1.5))
        if self.noise and rnd.random() < self.noise:
            rng = np.random.default_rng(rnd.getrandbits(32))
            noisy = image.astype(np.float32) + rng.normal(0, rnd.uniform(2, 10), image.shape)
            image = np.clip(noisy, 0, 255).astype(np.uint8)
        if self.jpeg and rnd.random() < self.jpeg:
            quality = rnd.randint(30, 90)
            ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                image = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
        return np.ascontiguousarray(image), np.ascontiguousarray(label).astype(dtype, copy=False)


def wire_augment_from_cfg(cfg) -> WireAugment:
    """The TRAIN.AUG_* keys as a WireAugment (inactive with the defaults)."""
    classes = wire_classes(cfg)  # none only while TRAIN.AUG_PASTE_WIRES is 0 (lib.config checks)
    return WireAugment(
        rotate=float(cfg.TRAIN.AUG_ROTATE),
        color_jitter=float(cfg.TRAIN.AUG_COLOR_JITTER),
        blur=float(cfg.TRAIN.AUG_BLUR),
        noise=float(cfg.TRAIN.AUG_NOISE),
        jpeg=float(cfg.TRAIN.AUG_JPEG),
        paste_wires=float(cfg.TRAIN.AUG_PASTE_WIRES),
        wire_class=classes[0] if classes else WireAugment.wire_class,
        ignore_label=int(cfg.TRAIN.IGNORE_LABEL),
    )

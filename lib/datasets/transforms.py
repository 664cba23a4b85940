"""The steps a training sample takes after the official scale and crop, as a list.

`TrainTransform.after_crop()` builds the list from its fields (and so from the config:
TRAIN.RANDOM_BRIGHTNESS, the opt-in TRAIN.AUG_* steps, TRAIN.FLIP, TRAIN.DOWNSAMPLERATE), in
the order the official gen_sample applies them; a step that is off is not in the list, so the
random draws are those of the official code. Each step is `step(image, label, rng) -> (image,
label)` with `rng` the `random` module (the generator the official code draws from), as
`lib.datasets.wire_aug.WireAugment` is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Brightness", "HorizontalFlip", "DownsampleLabel"]


@dataclass(frozen=True)
class Brightness:
    """Half the time, every pixel shifted by one draw from [-shift, shift] (clipped to 0..255)."""

    shift: int

    def __call__(self, image: np.ndarray, label: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() >= 0.5:
            shift = rng.randint(-self.shift, self.shift)
            image = np.clip(image.astype(np.int16) + shift, 0, 255).astype(np.uint8)
        return image, label


@dataclass(frozen=True)
class HorizontalFlip:
    """Half the time, the image and its label mirrored left to right."""

    def __call__(self, image: np.ndarray, label: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
        if rng.randint(0, 1):
            return image[:, ::-1], label[:, ::-1]
        return image, label


@dataclass(frozen=True)
class DownsampleLabel:
    """The label shrunk by `rate` (nearest), for a network whose output is that much smaller."""

    rate: int

    def __call__(self, image: np.ndarray, label: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
        scale = 1.0 / self.rate
        label = cv2.resize(np.ascontiguousarray(label, dtype=np.int32), None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_NEAREST)
        return image, label

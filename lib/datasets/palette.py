"""Writing class-id maps: palette PNGs (indices = class ids, for viewing) and id PNGs (for tools).

save_palette_png(pred, "out/x.png", palette_for("cityscapes", 19))
save_id_png(pred, "out/x.png", POWERLINE_ID_VALUES)          # wires as 255, as the seed did
save_id_png(pred, "out/x.png", cityscapes_submission_values())  # train ids -> label ids
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lib.datasets.labels import LABELS

__all__ = [
    "CITYSCAPES_PALETTE",
    "CITYSCAPES_ID_PALETTE",
    "POWERLINE_PALETTE",
    "POWERLINE_ID_VALUES",
    "voc_palette",
    "palette_for",
    "save_palette_png",
    "save_id_png",
    "cityscapes_submission_values",
]

# Colours of the 19 train ids, in train-id order.
CITYSCAPES_PALETTE = [
    lab.color for lab in sorted(LABELS, key=lambda x: x.train_id) if 0 <= lab.train_id < 255
]
# Colours of the 34 label ids (for labelIds images).
CITYSCAPES_ID_PALETTE = [lab.color for lab in sorted(LABELS, key=lambda x: x.id) if lab.id >= 0]
POWERLINE_PALETTE = [(0, 0, 0), (255, 0, 0)]  # background black, wire red
POWERLINE_ID_VALUES = (0, 255)  # the seed's masks: wire = 255


def voc_palette(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map: distinct colours for any number of classes."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


def palette_for(dataset: str, num_classes: int) -> list[tuple[int, int, int]]:
    """The palette of a dataset's class ids (VOC colours for anything else)."""
    if dataset == "cityscapes" and num_classes == 19:
        return list(CITYSCAPES_PALETTE)
    if num_classes == 2:
        return list(POWERLINE_PALETTE)
    return voc_palette(num_classes)


def _as_uint8(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"expected a (H, W) class-id map, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() > 255):
        raise ValueError(
            f"class ids must be in [0, 255] for an 8-bit PNG, got [{ids.min()}, {ids.max()}]"
        )
    return ids.astype(np.uint8)


def save_palette_png(ids: np.ndarray, path: str | Path, palette: Sequence[Sequence[int]]) -> None:
    """Save (H, W) class ids as a palette PNG: pixel values stay the ids, viewers show colours."""
    image = Image.fromarray(_as_uint8(ids))  # mode L; putpalette makes it P
    flat = [int(v) for colour in palette for v in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def save_id_png(ids: np.ndarray, path: str | Path, values: Sequence[int] | None = None) -> None:
    """Save (H, W) class ids as a grayscale PNG, class c written as values[c] (default: c)."""
    ids = _as_uint8(ids)
    if values is not None:
        lut = np.zeros(256, dtype=np.uint8)
        lut[: len(values)] = values
        ids = lut[ids]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids).save(path)


def cityscapes_submission_values() -> list[int]:
    """Train id -> Cityscapes label id, as `values` for save_id_png (benchmark submissions)."""
    return [lab.id for lab in sorted(LABELS, key=lambda x: x.train_id) if 0 <= lab.train_id < 255]

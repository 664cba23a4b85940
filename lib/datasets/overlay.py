"""Drawing class-id maps over photos, with boxes around large connected regions.

The seed's draw_contours boxed every connected wire region above a size; `region_boxes`
does that on any class, `overlay` blends a palette over the photo and draws the boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["region_boxes", "overlay"]


def region_boxes(
    ids: np.ndarray, classes: Sequence[int] = (1,), min_area: int = 200
) -> list[tuple[int, int, int, int, int]]:
    """Boxes (class, x, y, w, h) of 8-connected regions of `classes` with at least `min_area` pixels."""
    boxes = []
    for cls in classes:
        count, _, stats, _ = cv2.connectedComponentsWithStats(
            (ids == cls).astype(np.uint8), connectivity=8
        )
        for x, y, w, h, area in stats[1:count]:
            if area >= min_area:
                boxes.append((int(cls), int(x), int(y), int(w), int(h)))
    return boxes


def overlay(
    image: np.ndarray,
    ids: np.ndarray,
    palette: Sequence[Sequence[int]],
    alpha: float = 0.5,
    boxes: Sequence[tuple[int, int, int, int, int]] = (),
    thickness: int = 2,
) -> np.ndarray:
    """RGB uint8 (H, W, 3) photo with non-background classes of (H, W) `ids` blended in.

    Class 0 is left untouched; `boxes` from `region_boxes` are drawn in their class colour.
    """
    if image.shape[:2] != ids.shape:
        raise ValueError(
            f"image is {image.shape[1]}x{image.shape[0]} but the label is {ids.shape[1]}x{ids.shape[0]}"
        )
    colours = np.zeros((256, 3), np.uint8)
    colours[: len(palette)] = np.asarray(palette, np.uint8)
    ids = np.clip(ids, 0, 255).astype(np.uint8)
    # only the marked pixels are coloured and blended (a few percent of a photo): a photo-sized
    # colour image would cost more than the blend
    where = np.nonzero((ids > 0) & (ids < len(palette)))
    out = image.copy()
    out[where] = (alpha * colours[ids[where]] + (1 - alpha) * image[where]).astype(np.uint8)
    for cls, x, y, w, h in boxes:
        colour = tuple(int(v) for v in colours[cls]) if cls < len(palette) else (255, 255, 0)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, thickness)
    return out

"""Drawing a wire: the primitives the generator (synthetic.py) and the paste augmentation
(wire_aug.py) share. A wire is a catenary centre line, its outline polygon `width` pixels wide
(in the annotation JSON's pixel convention), filled anti-aliased in a grey chosen to contrast
with the photo under it."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["catenary", "wire_polygon", "draw_wire", "contrasting_grey"]


def catenary(p0: np.ndarray, p1: np.ndarray, sag: float, n: int = 64) -> np.ndarray:
    """(n, 2) points from p0 to p1 sagging by `sag` pixels (perpendicular, cosh-shaped)."""
    t = np.linspace(0.0, 1.0, n)
    line = p0[None] + t[:, None] * (p1 - p0)[None]
    direction = (p1 - p0) / max(np.linalg.norm(p1 - p0), 1e-6)
    normal = np.array([-direction[1], direction[0]])
    if normal[1] < 0:
        normal = -normal  # sag downwards in the picture
    c = 2.0
    shape = (np.cosh(c) - np.cosh(c * (2 * t - 1))) / (
        np.cosh(c) - 1
    )  # 0 at the ends, 1 in the middle
    return line + sag * shape[:, None] * normal[None]


def wire_polygon(centre: np.ndarray, width: float) -> np.ndarray:
    """The outline of a wire of `width` pixels along the (n, 2) centre line: (2n, 2) points."""
    tangent = np.gradient(centre, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-6)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    half = width / 2.0
    return np.concatenate([centre + half * normal, (centre - half * normal)[::-1]])


def draw_wire(image: np.ndarray, polygon: np.ndarray, colour: tuple) -> None:
    """Fill `polygon` (pixel coordinates as the JSON holds them) anti-aliased into `image`.

    The JSON's coordinates put pixel i on [i, i + 1), its centre at i + 0.5, which is how the
    label rasteriser reads them; OpenCV puts pixel centres at integers, hence the -0.5. Without
    it every wire is drawn half a pixel down-right of its label.
    """
    points = np.round((np.asarray(polygon) - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(image, [points], colour, cv2.LINE_AA, shift=4)


def contrasting_grey(
    grey: np.ndarray, centre: np.ndarray, contrast: float, coin, darker_above: float
) -> float:
    """A grey level `contrast` away from the photo under the middle of the wire `centre`:
    darker over ground brighter than `darker_above`, else darker or brighter by `coin()`
    (called only then), and brighter where darker would go below 0."""
    height, width = grey.shape[:2]
    mid = centre[len(centre) // 2].astype(int)
    local = float(grey[np.clip(mid[1], 0, height - 1), np.clip(mid[0], 0, width - 1)])
    darker = local - contrast > 0 and (local > darker_above or coin() < 0.5)
    return local - contrast if darker else min(local + contrast, 255.0)

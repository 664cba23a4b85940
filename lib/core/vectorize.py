"""Predicted wire regions -> thin polygons -> annotation-platform JSON (pre-annotations).

The platform's polygons have no holes, but wire regions do: two crossing wires, or a wire and
its neighbour touching twice, enclose background. A region with a hole is cut in two through
the hole (a vertical cut at the hole's middle column) until no piece has one; the pieces are
disjoint pixel sets, so drawing all their polygons gives the region back. Each piece's outer
contour (pixel centres, as `cv2.findContours` traces them) keeps its corners only (collinear
points dropped, optionally Douglas-Peucker); the platform draws polygons with their outline, which restores
one-pixel-wide parts. `tools_jss/json2lableImg_jss.py` reads the file back into masks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from lib.datasets.annotations import write_platform_json

__all__ = [
    "region_polygons",
    "wire_polygons",
    "count_segments",
    "platform_entry",
    "write_preannotations",
]


def _pieces_without_holes(
    mask: np.ndarray, x0: int, y0: int
) -> Iterable[tuple[np.ndarray, int, int]]:
    """Split one uint8 8-connected region (cropped, origin x0, y0) into hole-free pieces."""
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    holes = [c for c, h in zip(contours, hierarchy[0]) if h[3] >= 0]
    if not holes:
        yield mask, x0, y0
        return
    hx, _, hw, _ = cv2.boundingRect(holes[0])
    cut = hx + hw // 2
    for part, dx in ((mask[:, :cut], 0), (mask[:, cut:], cut)):
        count, labels = cv2.connectedComponents(part, connectivity=8)
        for k in range(1, count):
            ys, xs = np.nonzero(labels == k)
            sub = (labels[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] == k).astype(np.uint8)
            yield from _pieces_without_holes(sub, x0 + dx + int(xs.min()), y0 + int(ys.min()))


def region_polygons(
    mask: np.ndarray, min_area: int = 16, tolerance: float = 0.0
) -> list[np.ndarray]:
    """Hole-free (N, 2) float polygons (N >= 3) covering the regions of a binary (H, W) mask.

    Coordinates are continuous (pixel (i, j) spans [j, j+1) x [i, i+1)), so vertices sit at pixel
    centres j + 0.5 and survive normalisation rounding: rasterisers that floor (PIL) or round
    them land on the same pixel.

    Regions of fewer than `min_area` pixels are dropped. `tolerance` is the Douglas-Peucker
    distance in pixels: 0 keeps every corner of the pixel outline (exact round trip); even 0.5
    loses about a tenth of a 3-px wire, whose outline it lets cross itself. Degenerate
    outlines (a one-pixel line) repeat a point to reach 3.
    """
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    polygons = []
    for k in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        region = (labels[y : y + h, x : x + w] == k).astype(np.uint8)
        for piece, px, py in _pieces_without_holes(region, x, y):
            contours, _ = cv2.findContours(piece, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            for contour in contours:
                approx = cv2.approxPolyDP(contour, tolerance, True).reshape(-1, 2)
                while len(approx) < 3:
                    approx = np.concatenate([approx, approx[:1]])
                polygons.append(approx.astype(np.float64) + (px + 0.5, py + 0.5))
    return polygons


def wire_polygons(
    ids: np.ndarray, wire_classes: Sequence[int] = (1,), **kwargs
) -> list[tuple[int, np.ndarray]]:
    """(class id, polygon) for every region of each class in `wire_classes` of (H, W) ids."""
    return [
        (int(c), poly)
        for c in wire_classes
        for poly in region_polygons(np.asarray(ids) == c, **kwargs)
    ]


def count_segments(ids: np.ndarray, wire_classes: Sequence[int] = (1,), min_area: int = 16) -> int:
    """Number of 8-connected wire regions with at least `min_area` pixels."""
    mask = np.isin(np.asarray(ids), list(wire_classes)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return int((stats[1:count, cv2.CC_STAT_AREA] >= min_area).sum())


def platform_entry(
    uri: str,
    ids: np.ndarray,
    wire_classes: Sequence[int] = (1,),
    class_names: dict[int, str] | None = None,
    **kwargs,
) -> dict:
    """An entry for `write_platform_json`: the photo's wire polygons in pixels.

    With `class_names`, each polygon carries its class name as label; without, polygons are
    unlabelled (the platform's single foreground class).
    """
    found = wire_polygons(ids, wire_classes, **kwargs)
    entry = {
        "uri": uri,
        "width": ids.shape[1],
        "height": ids.shape[0],
        "polygons": [p for _, p in found],
    }
    if class_names:
        entry["labels"] = [class_names[c] for c, _ in found]
    return entry


def write_preannotations(path: str | Path, entries: Iterable[dict]) -> Path:
    """Write entries (from `platform_entry`, polygons in pixels) as one platform JSON file."""
    write_platform_json(path, entries)
    return Path(path)

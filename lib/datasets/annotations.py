"""Polygon annotations: parse three JSON formats, rasterise them, write the platform format.

Formats:
- ``platform``: the annotation platform's export, one file for many images:
  ``{"items": [{"uris": ["<bucket>/<file>.jpeg"], "results": {"polys": [{"poly": [[x, y], ...]}]}}]}``
  with coordinates normalised to [0, 1], scaled by the image's width and height. A shape
  reaching beyond the image is drawn as far as it lies inside (its vertices are not moved to
  the border, which would change its shape), and `ParseResult.warnings` names the items whose
  shapes reach more than OUTSIDE_MARGIN beyond it.
  An item whose coordinates go above 2 was exported in pixels: it is drawn in pixels and
  `ParseResult.warnings` gets one line per file naming such items. A poly may carry a
  ``"label"``; without one it gets the single foreground class. A malformed item is one error
  naming the file and item index; the other items are kept.
- ``labelme``: one file per image, ``shapes`` of polygon / rectangle / line / linestrip /
  circle / point in pixels; lines are drawn `line_width` pixels wide (wires).
- ``cityscapes``: ``imgWidth``, ``imgHeight``, ``objects`` with ``label`` and ``polygon``;
  rasterised like cityscapesscripts' json2labelImg (label ids, "...group" labels, deleted
  objects and negative ids skipped).

Every problem is an `AnnotationError` whose message names the file and the item.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

from lib.datasets.labels import NAME_TO_LABEL

__all__ = [
    "AnnotationError",
    "Shape",
    "ImageAnnotation",
    "ParseResult",
    "load_json",
    "detect_format",
    "parse_file",
    "rasterise",
    "write_platform_json",
    "clip_polygon",
    "mask_to_polygons",
    "FORMATS",
]

FORMATS = ("platform", "labelme", "cityscapes")
# Platform coordinates a little outside [0, 1] are clamped; an item reaching above this is in
# pixels (normalised ones are never twice the image; pixel shapes are rarely within 2 px).
PIXEL_LIMIT = 2.0
# A normalised vertex this far outside [0, 1] (2% of the image) is more than a rounding slip:
# the item is named in a warning (the part inside the image is still drawn)
OUTSIDE_MARGIN = 0.02
_MIN_POINTS = {"polygon": 3, "rectangle": 2, "line": 2, "linestrip": 2, "circle": 2, "point": 1}


class AnnotationError(ValueError):
    """A bad annotation file or item; the message names both."""


@dataclass
class Shape:
    """One drawn region: `points` (N, 2) float, in pixels or normalised to [0, 1]."""

    kind: str  # polygon | rectangle | line | linestrip | circle | point
    points: np.ndarray
    label: str | None = None


@dataclass
class ImageAnnotation:
    """The shapes of one image, as found in a file."""

    source: str  # "<json file> item <i>" or "<json file>": where errors point to
    image: str  # uri, imagePath or image name as written in the file
    shapes: list[Shape] = field(default_factory=list)
    width: int | None = None  # size declared in the file, if any
    height: int | None = None
    normalised: bool = False  # platform coordinates in [0, 1]
    fmt: str = "platform"


@dataclass
class ParseResult:
    """What one file held: good annotations, bad items (errors), items without results, and
    warnings about items that were read in a way the format does not declare."""

    annotations: list[ImageAnnotation] = field(default_factory=list)
    errors: list[AnnotationError] = field(default_factory=list)
    unannotated: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one line each, naming file and items


def load_json(path: str | Path) -> Any:
    """Read a JSON file; unreadable, empty or malformed files raise AnnotationError."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationError(
            f"{path}: cannot read ({getattr(err, 'strerror', None) or err})"
        ) from None
    if not text.strip():
        raise AnnotationError(f"{path}: empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationError(
            f"{path}: malformed JSON at line {err.lineno} column {err.colno} ({err.msg})"
        ) from None


def detect_format(data: Any, path: str | Path) -> str:
    """platform | labelme | cityscapes, from the keys of a loaded file."""
    if isinstance(data, dict):
        if "items" in data:
            return "platform"
        if "shapes" in data:
            return "labelme"
        if "objects" in data and "imgWidth" in data:
            return "cityscapes"
    raise AnnotationError(
        f"{path}: not a platform, labelme or cityscapes annotation file (use --format)"
    )


def _points(raw: Any, kind: str, where: str) -> np.ndarray:
    """Validate a list of [x, y] pairs: numeric, finite, enough of them for `kind`."""
    if not isinstance(raw, list) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in raw
    ):
        raise AnnotationError(
            f"{where}: points must be a list of [x, y] pairs, got {str(raw)[:60]}"
        )
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for p in raw for v in p):
        raise AnnotationError(f"{where}: non-numeric coordinate in {str(raw)[:60]}")
    points = np.asarray(raw, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(points).all():
        raise AnnotationError(f"{where}: NaN or infinite coordinate")
    if len(points) < _MIN_POINTS[kind]:
        raise AnnotationError(
            f"{where}: {kind} with {len(points)} points (needs at least {_MIN_POINTS[kind]})"
        )
    return points


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string"}.get(
        type(value), type(value).__name__
    )


def _platform_shapes(item: Any, where: str) -> tuple[str, list[Shape], str]:
    """(uri, shapes, where with the image name) of one platform item; no shapes: no results."""
    if not isinstance(item, dict):
        raise AnnotationError(f"{where}: item must be an object, got {_type_name(item)}")
    uris = item.get("uris")
    if not isinstance(uris, list) or not uris or not isinstance(uris[0], str):
        raise AnnotationError(f"{where}: 'uris' must be a non-empty list of strings")
    where = f"{where} ({uris[0].rsplit('/', 1)[-1]})"
    results = item.get("results")
    if results is not None and not isinstance(results, dict):
        raise AnnotationError(f"{where}: 'results' must be an object, got {_type_name(results)}")
    polys = (results or {}).get("polys")
    if polys is not None and not isinstance(polys, list):
        raise AnnotationError(f"{where}: 'polys' must be a list, got {_type_name(polys)}")
    if not polys:
        return uris[0], [], where
    shapes = []
    for j, poly in enumerate(polys):
        if not isinstance(poly, dict) or "poly" not in poly:
            raise AnnotationError(f"{where} poly {j}: missing 'poly'")
        label = poly.get("label")
        if label is not None and not isinstance(label, str):
            raise AnnotationError(
                f"{where} poly {j}: 'label' must be a string, got {_type_name(label)}"
            )
        shapes.append(
            Shape("polygon", _points(poly["poly"], "polygon", f"{where} poly {j}"), label)
        )
    return uris[0], shapes, where


def _parse_platform(data: dict, path: Path) -> ParseResult:
    result = ParseResult()
    items = data.get("items")
    if not isinstance(items, list):
        raise AnnotationError(f"{path}: 'items' must be a list")
    in_pixels = []  # "<index> (<name>)" of items read as pixel coordinates
    outside = []  # the same, of normalised items with shapes reaching beyond the image
    for i, item in enumerate(items):
        try:
            uri, shapes, where = _platform_shapes(item, f"{path} item {i}")
        except AnnotationError as err:
            result.errors.append(err)
            continue
        except (AttributeError, TypeError, KeyError, ValueError) as err:  # one odd item only
            result.errors.append(AnnotationError(f"{path} item {i}: unexpected structure ({err})"))
            continue
        if not shapes:
            result.unannotated.append(uri)
            continue
        normalised = max(float(shape.points.max()) for shape in shapes) <= PIXEL_LIMIT
        if not normalised:
            in_pixels.append(f"{i} ({uri.rsplit('/', 1)[-1]})")
        elif any(((s.points < -OUTSIDE_MARGIN) | (s.points > 1 + OUTSIDE_MARGIN)).any()
                 for s in shapes):
            outside.append(f"{i} ({uri.rsplit('/', 1)[-1]})")
        result.annotations.append(
            ImageAnnotation(where, uri, shapes, normalised=normalised, fmt="platform")
        )
    if in_pixels:
        named = ", ".join(in_pixels[:5]) + (
            f" and {len(in_pixels) - 5} more" if len(in_pixels) > 5 else ""
        )
        result.warnings.append(
            f"{path}: item{'s' if len(in_pixels) > 1 else ''} {named} "
            f"{'have' if len(in_pixels) > 1 else 'has'} coordinates above {PIXEL_LIMIT:g}, "
            "not normalised to [0, 1]: read as pixels"
        )
    if outside:
        named = ", ".join(outside[:5]) + (
            f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        )
        result.warnings.append(
            f"{path}: item{'s' if len(outside) > 1 else ''} {named} "
            f"{'have shapes' if len(outside) > 1 else 'has a shape'} reaching beyond the image "
            "(coordinates outside [0, 1]): drawn only where inside; check the annotation"
        )
    return result


def _parse_labelme(data: dict, path: Path) -> ParseResult:
    where = str(path)
    shapes = []
    if not isinstance(data.get("shapes"), list):
        raise AnnotationError(f"{where}: 'shapes' must be a list")
    for j, shape in enumerate(data["shapes"]):
        kind = (shape.get("shape_type") or "polygon") if isinstance(shape, dict) else None
        if kind not in _MIN_POINTS:
            raise AnnotationError(f"{where} shape {j}: unsupported shape_type {kind!r}")
        points = _points(shape.get("points"), kind, f"{where} shape {j} ({shape.get('label')})")
        shapes.append(Shape(kind, points, shape.get("label")))
    image = data.get("imagePath") or path.with_suffix(".jpg").name
    ann = ImageAnnotation(
        where, image, shapes, data.get("imageWidth"), data.get("imageHeight"), fmt="labelme"
    )
    return ParseResult([ann])


def _parse_cityscapes(data: dict, path: Path) -> ParseResult:
    where = str(path)
    shapes = []
    for j, obj in enumerate(data.get("objects") or []):
        if obj.get("deleted"):
            continue
        shapes.append(
            Shape(
                "polygon",
                _points(obj.get("polygon"), "polygon", f"{where} object {j}"),
                obj.get("label"),
            )
        )
    image = path.name.replace("_gtFine_polygons.json", "_leftImg8bit.png").replace(
        "_gtCoarse_polygons.json", "_leftImg8bit.png"
    )
    width, height = data.get("imgWidth"), data.get("imgHeight")
    return ParseResult([ImageAnnotation(where, image, shapes, width, height, fmt="cityscapes")])


def parse_file(path: str | Path, fmt: str = "auto") -> ParseResult:
    """Parse one JSON file of `fmt` (or detect it); a bad file raises, bad items are collected."""
    path = Path(path)
    data = load_json(path)
    fmt = detect_format(data, path) if fmt == "auto" else fmt
    if fmt not in FORMATS or not isinstance(data, dict):
        raise AnnotationError(f"{path}: not a {fmt} annotation file")
    try:
        return {
            "platform": _parse_platform,
            "labelme": _parse_labelme,
            "cityscapes": _parse_cityscapes,
        }[fmt](data, path)
    except AnnotationError:
        raise
    except (AttributeError, TypeError, KeyError) as err:
        raise AnnotationError(f"{path}: unexpected structure for {fmt} format ({err})") from None


def _class_of(
    shape: Shape, ann: ImageAnnotation, classes: dict[str, int], ignore_unknown: bool
) -> int | None:
    """Class id of a shape, None to skip it; unknown labels raise unless ignored."""
    if ann.fmt == "cityscapes":
        name = shape.label or ""
        if name not in NAME_TO_LABEL and name.endswith("group"):
            name = name[: -len("group")]
        if name in NAME_TO_LABEL:
            label_id = NAME_TO_LABEL[name].id
            return label_id if label_id >= 0 else None
    elif shape.label is None:
        foreground = sorted({v for v in classes.values() if v != 0})
        if len(foreground) == 1:
            return foreground[0]
        raise AnnotationError(
            f"{ann.source}: a shape has no label and the classes {classes} have several foreground ids"
        )
    elif shape.label in classes:
        return classes[shape.label]
    if ignore_unknown:
        return None
    raise AnnotationError(
        f"{ann.source}: unknown label {shape.label!r} (known: {', '.join(classes)}; or --ignore-unknown)"
    )


def rasterise(
    ann: ImageAnnotation,
    width: int,
    height: int,
    classes: dict[str, int],
    line_width: int = 5,
    ignore_unknown: bool = False,
) -> np.ndarray:
    """Draw `ann` into a (height, width) uint8 class-id map, background 0, later shapes on top."""
    if ann.width is not None and (ann.width, ann.height) != (width, height):
        raise AnnotationError(
            f"{ann.source}: declares {ann.width}x{ann.height} but the image is {width}x{height}"
        )
    label = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(label)
    outline = ann.fmt != "cityscapes"  # labelme draws outlines too; cityscapesscripts does not
    for shape in ann.shapes:
        value = _class_of(shape, ann, classes, ignore_unknown)
        if value is None:
            continue
        points = shape.points
        if ann.normalised:  # not clamped: the drawing clips the shape to the image
            points = points * (width, height)
        xy = [(float(x), float(y)) for x, y in points]
        if shape.kind == "polygon":
            draw.polygon(xy, fill=value, outline=value if outline else None)
        elif shape.kind == "rectangle":
            (x0, y0), (x1, y1) = xy[0], xy[1]
            draw.rectangle(
                [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=value, outline=value
            )
        elif shape.kind in ("line", "linestrip"):
            draw.line(xy, fill=value, width=line_width)
        elif shape.kind == "circle":
            (cx, cy), (px, py) = xy[0], xy[1]
            r = math.hypot(px - cx, py - cy)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=value, outline=value)
        else:  # point
            r = max(line_width / 2, 1)
            draw.ellipse(
                [xy[0][0] - r, xy[0][1] - r, xy[0][0] + r, xy[0][1] + r], fill=value, outline=value
            )
    return np.asarray(label).copy()


def clip_polygon(points: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip an (N, 2) polygon to the box [0, width] x [0, height] (Sutherland-Hodgman)."""
    out = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    for axis, bound, keep_below in (
        (0, 0.0, False),
        (0, width, True),
        (1, 0.0, False),
        (1, height, True),
    ):
        if len(out) == 0:
            break
        inside = out[:, axis] <= bound if keep_below else out[:, axis] >= bound
        if inside.all():
            continue
        result = []
        for i in range(len(out)):
            cur, prev = out[i], out[i - 1]
            if inside[i] != inside[i - 1]:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                result.append(prev + t * (cur - prev))
            if inside[i]:
                result.append(cur)
        out = np.asarray(result).reshape(-1, 2)
    return out


def write_platform_json(path: str | Path, entries: Iterable[dict]) -> None:
    """Write the platform format from entries ``{"uri", "width", "height", "polygons"}``.

    `polygons` are (N, 2) pixel coordinates (N >= 3); an optional ``"labels"`` list gives each
    polygon a label. Polygons are clipped to the image, then written normalised to [0, 1] with 6 decimals; an entry
    with no polygons becomes an item without results (what the platform exports for them).
    """
    items = []
    for entry in entries:
        width, height = float(entry["width"]), float(entry["height"])
        polys = []
        labels = entry.get("labels") or [None] * len(entry["polygons"])
        for polygon, label in zip(entry["polygons"], labels):
            pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
            if len(pts) < 3:
                raise ValueError(f"{entry['uri']}: polygon with {len(pts)} points (needs 3)")
            pts = clip_polygon(pts, width, height)
            if len(pts) < 3:
                continue  # entirely outside the image
            norm = np.clip(pts / (width, height), 0.0, 1.0)
            poly = {"poly": [[round(float(x), 6), round(float(y), 6)] for x, y in norm]}
            if label is not None:
                poly["label"] = label
            polys.append(poly)
        items.append({"uris": [entry["uri"]], "results": {"polys": polys} if polys else {}})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"items": items}, ensure_ascii=False), encoding="utf-8")


def mask_to_polygons(
    mask: np.ndarray, min_area: float = 16.0, tolerance: float = 1.0
) -> list[np.ndarray]:
    """Outer contours of a binary (H, W) mask as (N, 2) float pixel polygons (N >= 3).

    Regions smaller than `min_area` pixels are dropped; `tolerance` is the Douglas-Peucker
    distance in pixels. Used to export predictions as pre-annotations.
    """
    contours, _ = cv2.findContours(
        (np.asarray(mask) > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    polygons = []
    for contour in contours:
        if cv2.contourArea(contour) < min_area:
            continue
        approx = cv2.approxPolyDP(contour, tolerance, True).reshape(-1, 2)
        if len(approx) >= 3:
            polygons.append(approx.astype(np.float64))
    return polygons

"""A generated power-line dataset: aerial-like photos with catenary wires, and their polygons.

Each image (default 960x540, 16:9 like the real 5472x3078 photos) gets a textured background
(field patches, tree clumps, roads, noise), 2-5 spans of 1-3 parallel catenary wires 4-10 px
wide whose contrast varies but stays visible, and now and then a lattice tower or a short
straight clutter line (not a wire). The wires are drawn from the same polygons that go into
ONE annotation-platform JSON, so labels rasterised from it line up with the pixels.
Everything is deterministic from the seed.

`style="real"` (opt-in; the demo keeps the style above) draws what real inspection photos
hold instead: 1-4 px wires (up to 8 for close-ups) in bundles whose spacing narrows with
perspective, low contrast (8-60 grey levels, darker or brighter), cut where foliage hides them,
a blurred image; and thin things that are not wires (road markings, kerbs, fences, branches,
roof edges, shadows of the wires).

`style="aerial"` (opt-in) draws aerial scenes of real wires' scale: ground
with fine natural texture everywhere (multi-octave brightness over the fields, forest canopy of
lit and shaded crowns, or scrub with hundreds of short twigs), in a third of the photos sky or
calm water above a wavy horizon or filling the frame; 1-3 spans of 1-4 parallel wires 1.5-5 px
wide with perspective, dark against sky and bright ground, sunlit against dark ground, now and
then cut by foliage or with their shadow on the ground; the hard negatives of the "real" style;
a slight blur and sensor noise.

`style="canopy"` (opt-in) is the "aerial" one with what real canopy and scrub hold at the
wires' scale on its ground: networks of thin curved dark gaps between leaf clusters (and lit
leaf edges), and tangles of bare branches that fork; none of them labelled. It is the style
that teaches real wires best of those measured (docs/real_photos.md, generated-only).
`style="canopy_close"` (opt-in) is the canopy one with a quarter of its spans seen close up:
round cables 5-16 px wide (at 540x360), dark at their edges with a glint on one side, spaced
further apart than they are wide; labelled as their full width.

`style="urban"` (opt-in) is for photos of towns and roads taken close up: ground of slabs with
thin dark joints, or asphalt with painted lines, dashes and zebra bands, between kerbs (a bright
and a dark straight edge), seen turned and tilted; roofs and facades with gutters, railings of
many thin bars, poles shaded round with their shadows, bare trees, hedges, now and then sky (in
three photos of ten the "aerial" or "canopy" ground instead); none of them labelled. Then 1-6
sagging wires, in bundles of 1-4, half of them 1-4 px wide and half 8-30 px (at 540x360) drawn
as round cables (dark edges, a lighter core, a glint on the sunlit side), often with a blurred
shadow on the ground, now and then partly out of focus; each labelled as its full width.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lib.datasets.annotations import write_platform_json
from lib.datasets.wire_drawing import catenary, contrasting_grey, draw_wire, wire_polygon

__all__ = ["background", "make_image", "make_real_image", "make_aerial_image", "make_canopy_image",
           "make_canopy_close_image", "make_urban_image", "generate", "STYLES"]


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """An aerial-like RGB uint8 (height, width, 3) texture: fields, trees, roads and noise."""
    earth = np.array(
        [
            [92, 110, 60],
            [120, 130, 75],
            [140, 120, 90],
            [105, 95, 70],
            [160, 150, 115],
            [75, 95, 55],
        ],
        np.float32,
    )
    image = np.empty((height, width, 3), np.float32)
    image[:] = earth[rng.integers(0, len(earth))]
    # Field patches: random quadrilaterals in earthy tones, edges softened afterwards.
    for _ in range(rng.integers(8, 20)):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.1, 0.4) * width
        angle = rng.uniform(0, np.pi)
        corners = [
            (
                cx + size * np.cos(angle + a) * rng.uniform(0.6, 1.0),
                cy + size * np.sin(angle + a) * rng.uniform(0.3, 0.7),
            )
            for a in (0, np.pi / 2, np.pi, 3 * np.pi / 2)
        ]
        colour = earth[rng.integers(0, len(earth))] + rng.normal(0, 10, 3)
        cv2.fillPoly(image, [np.asarray(corners, np.int32)], tuple(float(v) for v in colour))
    image = cv2.GaussianBlur(image, (0, 0), 3)
    # Tree clumps: dark green blobs.
    for _ in range(rng.integers(10, 60)):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(4, 25))
        colour = (rng.uniform(20, 60), rng.uniform(50, 100), rng.uniform(20, 50))
        cv2.circle(image, centre, radius, colour, -1, cv2.LINE_AA)
    # Roads: a few wide, light, slightly curved strokes.
    for _ in range(rng.integers(0, 3)):
        pts = np.stack([np.linspace(-50, width + 50, 6), rng.uniform(0, height, 6)], axis=1)
        if rng.random() < 0.5:
            pts = np.stack([rng.uniform(0, width, 6), np.linspace(-50, height + 50, 6)], axis=1)
        grey = float(rng.uniform(120, 190))
        cv2.polylines(
            image,
            [pts.astype(np.int32)],
            False,
            (grey, grey, grey),
            int(rng.integers(12, 30)),
            cv2.LINE_AA,
        )
    # Fine texture and sensor noise.
    texture = cv2.GaussianBlur(
        rng.normal(0, 12, size=(height, width)).astype(np.float32), (0, 0), 1.5
    )
    image += texture[..., None] + rng.normal(0, 4, size=(height, width, 3)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _span(rng: np.random.Generator, width: int, height: int, max_sag: float):
    """(p0, p1, sag, offset) of a wire across the image: ends just outside opposite sides,
    a sag of up to `max_sag` of its length, and the unit normal for parallel wires."""
    side = int(rng.integers(0, 2))
    p0 = _edge_point(rng, width, height, side)
    p1 = _edge_point(rng, width, height, side + 2)
    sag = rng.uniform(0, max_sag) * np.linalg.norm(p1 - p0)
    direction = (p1 - p0) / np.linalg.norm(p1 - p0)
    return p0, p1, sag, np.array([-direction[1], direction[0]])


def _edge_point(rng: np.random.Generator, width: int, height: int, side: int) -> np.ndarray:
    """A point slightly outside the image on side 0 (left), 1 (top), 2 (right) or 3 (bottom)."""
    m = 20.0
    if side == 0:
        return np.array([-m, rng.uniform(0, height)])
    if side == 2:
        return np.array([width + m, rng.uniform(0, height)])
    if side == 1:
        return np.array([rng.uniform(0, width), -m])
    return np.array([rng.uniform(0, width), height + m])


def _tower(rng: np.random.Generator, image: np.ndarray) -> None:
    """A small lattice tower seen from above: thin dark lines, not labelled as wire."""
    height, width = image.shape[:2]
    cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
    s = rng.uniform(15, 35)
    square = np.array([[cx - s, cy - s], [cx + s, cy - s], [cx + s, cy + s], [cx - s, cy + s]])
    colour = tuple(float(v) for v in rng.uniform(30, 80, 3))
    cv2.polylines(image, [square.astype(np.int32)], True, colour, 2, cv2.LINE_AA)
    for a, b in ((0, 2), (1, 3)):
        cv2.line(
            image,
            tuple(square[a].astype(int)),
            tuple(square[b].astype(int)),
            colour,
            1,
            cv2.LINE_AA,
        )


def make_image(
    rng: np.random.Generator, width: int = 960, height: int = 540
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One synthetic photo (RGB uint8) and its wire polygons in pixels, each (N, 2)."""
    image = background(rng, width, height)
    if rng.random() < 0.3:
        _tower(rng, image)
    if rng.random() < 0.4:  # straight clutter (a fence or a ditch): thin but not a wire
        a, b = _edge_point(rng, width, height, 0), _edge_point(rng, width, height, 2)
        a[0], b[0] = rng.uniform(0, width / 2), rng.uniform(width / 2, width)
        cv2.line(
            image,
            tuple(a.astype(int)),
            tuple(b.astype(int)),
            tuple(float(v) for v in rng.uniform(40, 90, 3)),
            2,
        )
    polygons = []
    scale = min(width, height) / 540.0
    for _ in range(rng.integers(2, 6)):
        p0, p1, sag, offset = _span(rng, width, height, 0.12)
        spacing = rng.uniform(12, 30) * scale
        for k in range(int(rng.integers(1, 4))):
            centre = catenary(p0 + k * spacing * offset, p1 + k * spacing * offset, sag)
            wire_width = rng.uniform(4, 10) * scale
            polygon = wire_polygon(centre, wire_width)
            local = float(
                image[
                    np.clip(int(centre[32, 1]), 0, height - 1),
                    np.clip(int(centre[32, 0]), 0, width - 1),
                ].mean()
            )
            contrast = rng.uniform(50, 110)
            value = (
                local - contrast
                if (local > 110 or rng.random() < 0.5) and local - contrast > 0
                else local + contrast
            )
            colour = tuple(float(np.clip(value + d, 0, 255)) for d in rng.normal(0, 8, 3))
            draw_wire(image, polygon, colour)
            polygons.append(polygon)
    image = cv2.GaussianBlur(image, (0, 0), 0.6)
    return image, polygons


def _hard_negatives(rng: np.random.Generator, image: np.ndarray, scale: float) -> None:
    """Thin things that are not wires, drawn in place (never labelled)."""
    height, width = image.shape[:2]

    def colour(lo, hi):
        return tuple(float(v) for v in np.clip(rng.uniform(lo, hi) + rng.normal(0, 6, 3), 0, 255))

    for _ in range(rng.integers(0, 3)):  # road markings: dashed bright lines
        a, b = _edge_point(rng, width, height, 0), _edge_point(rng, width, height, 2)
        for t in np.arange(0.0, 1.0, 0.08):
            p, q = a + t * (b - a), a + (t + 0.04) * (b - a)
            cv2.line(image, tuple(p.astype(int)), tuple(q.astype(int)), colour(200, 250),
                     max(1, int(2 * scale)), cv2.LINE_AA)
    for _ in range(rng.integers(0, 3)):  # kerbs and roof edges: long straight thin lines
        a = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        d = rng.normal(0, 1, 2)
        d /= np.linalg.norm(d)
        length = rng.uniform(0.2, 0.8) * width
        cv2.line(image, tuple(a.astype(int)), tuple((a + length * d).astype(int)),
                 colour(20, 240), 1 + int(rng.integers(0, 2)), cv2.LINE_AA)
    if rng.random() < 0.4:  # a fence: two parallel thin lines with posts
        a = np.array([rng.uniform(0, width / 2), rng.uniform(0, height)])
        b = a + np.array([rng.uniform(width / 3, width), rng.uniform(-height / 4, height / 4)])
        c = colour(40, 120)
        for off in (0, 4 * scale):
            cv2.line(image, tuple((a + [0, off]).astype(int)), tuple((b + [0, off]).astype(int)),
                     c, 1, cv2.LINE_AA)
        for t in np.linspace(0, 1, int(rng.integers(5, 15))):
            p = a + t * (b - a)
            cv2.line(image, tuple(p.astype(int)), tuple((p + [0, 8 * scale]).astype(int)), c, 2)
    for _ in range(rng.integers(0, 6)):  # branches: dark wiggly curves
        p = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        points = [p]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(5, 25))):
            heading += rng.normal(0, 0.35)
            p = p + rng.uniform(3, 10) * scale * np.array([np.cos(heading), np.sin(heading)])
            points.append(p)
        cv2.polylines(image, [np.asarray(points, np.int32)], False, colour(15, 60), 1, cv2.LINE_AA)
    if rng.random() < 0.3:
        _tower(rng, image)


def _draw_shadow(rng: np.random.Generator, image: np.ndarray, clean: np.ndarray,
                 centre: np.ndarray, width_px: float, scale: float, darkness: float) -> None:
    """The shadow of the wire along `centre` on the ground (not a wire, never labelled): offset
    down-right, `darkness` times the wire-free ground `clean` under its middle."""
    height, width = image.shape[:2]
    s_centre = centre + np.array([rng.uniform(15, 40), rng.uniform(15, 40)]) * scale
    x, y = (int(v) for v in s_centre[len(s_centre) // 2])
    under = clean[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)].astype(float)
    draw_wire(image, wire_polygon(s_centre, width_px), tuple(darkness * under))


def _draw_stretches(image: np.ndarray, centre: np.ndarray, cuts: list, width_px: float,
                    colour: tuple, cable: tuple | None = None) -> list[np.ndarray]:
    """Draw the wire along `centre` except between the pairs of `cuts` (indices into it, where
    something hides it); every visible stretch of 3 points or more is one polygon, returned.
    `cable`: (edge, core, glint, lit) of `_draw_cable` to draw a round cable instead of the flat
    `colour`."""
    bounds = [0, *cuts, len(centre)]
    polygons = []
    for a, b in zip(bounds[::2], bounds[1::2]):
        if b - a >= 3:
            polygons.append(wire_polygon(centre[a:b], width_px))
            if cable is None:
                draw_wire(image, polygons[-1], colour)
            else:
                _draw_cable(image, centre[a:b], width_px, *cable)
    return polygons


def make_real_image(
    rng: np.random.Generator, width: int = 960, height: int = 540
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One photo in the "real" style (see the module doc) and its wire polygons in pixels."""
    image = background(rng, width, height)
    scale = min(width, height) / 360.0  # wire sizes as in 540x360 inspection photos
    if rng.random() < 0.5:  # forest canopy: many small dark and lit blobs
        for _ in range(int(rng.integers(100, 400))):
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            lit = rng.random() < 0.3
            tone = (rng.uniform(60, 120), rng.uniform(90, 150), rng.uniform(40, 80)) if lit else (
                rng.uniform(10, 40), rng.uniform(30, 70), rng.uniform(10, 35))
            cv2.circle(image, centre, int(rng.integers(2, 9) * scale), tone, -1, cv2.LINE_AA)
    _hard_negatives(rng, image, scale)
    clean = image.copy()
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    polygons = []
    for _ in range(rng.integers(1, 4)):
        p0, p1, sag, offset = _span(rng, width, height, 0.1)
        near, far = rng.uniform(6, 30) * scale, rng.uniform(0.3, 1.0)  # perspective: spacing shrinks
        close_up = rng.random() < 0.15
        shadow = rng.random() < 0.3
        for k in range(int(rng.integers(1, 5))):
            centre = catenary(p0 + k * near * offset, p1 + k * near * far * offset, sag, n=96)
            width_px = (rng.uniform(3, 8) if close_up else rng.uniform(1, 4)) * scale
            value = contrasting_grey(grey, centre, rng.uniform(8, 60), rng.random, 120)
            col = tuple(float(np.clip(value + d, 0, 255)) for d in rng.normal(0, 5, 3))
            if shadow:
                _draw_shadow(rng, image, clean, centre, width_px, scale, 0.75)
            # occlusion: foliage hides some stretches; each visible stretch is its own polygon
            cuts = sorted(rng.choice(np.arange(8, 88), size=2 * int(rng.integers(0, 3)), replace=False))
            polygons += _draw_stretches(image, centre, cuts, width_px, col)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
    noise = rng.normal(0, rng.uniform(1, 5), image.shape)
    image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return image, polygons


def _smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Float32 (height, width) Gaussian noise on a grid of `cells` across the width, cubic."""
    grid = rng.normal(0, 1, (max(2, cells * height // width + 1), cells + 1)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _ridges(rng: np.random.Generator, width: int, height: int, cells: int,
            half_width: float) -> np.ndarray:
    """Float32 (height, width) in [0, 1]: 1 on the zero-crossings of a smooth random field
    (`cells` across the width), fading to 0 `half_width` px away: a network of thin curved
    lines, closed loops and forks, like the gaps between leaf clusters."""
    field = _smooth_noise(rng, width, height, cells)
    gy, gx = np.gradient(field)
    distance = np.abs(field) / (np.hypot(gx, gy) + 1e-6)  # px to the nearest zero-crossing
    return np.clip(1 - distance / half_width, 0, 1)


def _branch(rng: np.random.Generator, image: np.ndarray, start: np.ndarray, heading: float,
            length: float, depth: int, tone: tuple) -> None:
    """A bare branch: a slightly bent 1-px stroke that forks into two thinner, shorter ones."""
    points, p = [start], start
    for _ in range(4):
        heading += rng.normal(0, 0.25)
        p = p + length / 4 * np.array([np.cos(heading), np.sin(heading)])
        points.append(p)
    cv2.polylines(image, [np.asarray(points, np.int32)], False, tone, 1, cv2.LINE_AA)
    if depth > 0:
        for turn in (-1, 1):
            _branch(rng, image, p, heading + turn * rng.uniform(0.3, 0.9),
                    length * rng.uniform(0.5, 0.8), depth - 1, tone)


def _fine_foliage(rng: np.random.Generator, image: np.ndarray, scale: float) -> None:
    """What real canopy and scrub hold at the wires' scale and the "aerial" ground lacks, drawn
    in place (never labelled): dark gaps between leaf clusters (networks of thin curved lines
    over part of the ground), lit leaf edges (the same, bright), and tangles of bare branches
    that fork, dark or sunlit grey."""
    height, width = image.shape[:2]
    patches = cv2.resize(rng.normal(0, 1, (3, 4)).astype(np.float32), (width, height),
                         interpolation=cv2.INTER_CUBIC)
    where = np.clip(patches + rng.uniform(-0.5, 1.0), 0, 1)[..., None]  # textured part of the ground
    for _ in range(int(rng.integers(2, 5))):
        lines = _ridges(rng, width, height, int(rng.uniform(20, 90) * width / (540 * scale)) + 1,
                        rng.uniform(0.6, 1.6) * scale)[..., None] * where
        if rng.random() < 0.7:  # dark gaps
            image *= 1 - rng.uniform(0.4, 0.85) * lines
        else:  # lit edges
            image += rng.uniform(30, 90) * lines
    for _ in range(int(rng.integers(0, 4))):  # a bare tree or shrub seen from above
        centre = np.array([rng.uniform(0, width), rng.uniform(0, height)])
        pale = rng.random() < 0.5
        for _ in range(int(rng.integers(3, 9))):
            grey = rng.uniform(140, 210) if pale else rng.uniform(20, 70)
            tone = tuple(float(grey + d) for d in rng.normal(0, 6, 3))
            _branch(rng, image, centre + rng.normal(0, 6, 2) * scale, rng.uniform(0, 2 * np.pi),
                    rng.uniform(15, 45) * scale, int(rng.integers(2, 5)), tone)


def _sky(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """(height, width, 3) sky or calm water: overcast grey or blue, a vertical gradient, soft
    bright clouds."""
    overcast = rng.random() < 0.4
    top = (np.full(3, rng.uniform(170, 235)) if overcast else
           np.array([rng.uniform(90, 170), rng.uniform(140, 205), rng.uniform(190, 250)]))
    bottom = top * rng.uniform(0.85, 1.1) + rng.normal(0, 10, 3)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky = top * (1 - t) + bottom * t
    clouds = cv2.resize(rng.normal(0, 1, (4, 6)).astype(np.float32), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    return sky + rng.uniform(0, 35) * np.clip(clouds, 0, None)[..., None]


def _natural_ground(rng: np.random.Generator, width: int, height: int, scale: float,
                    fine: bool = False) -> np.ndarray:
    """Float32 RGB ground with fine natural texture everywhere: multi-octave brightness over the
    fields, then forest canopy (crowns, each lit on one side with its shadow on the other) or
    scrub (bushes and hundreds of short twigs, thin lines that are not wires), or bare fields;
    with `fine`, `_fine_foliage` on top (before any sky)."""
    image = background(rng, width, height).astype(np.float32)
    texture = np.zeros((height, width), np.float32)
    for cells, amp in ((3, 1.0), (9, 0.6), (27, 0.45), (81, 0.35), (200, 0.3), (500, 0.3)):
        texture += amp * _smooth_noise(rng, width, height, cells)
    image *= 1 + rng.uniform(0.1, 0.25) * texture[..., None]
    kind = rng.random()
    light = rng.uniform(0, 2 * np.pi)  # where the sun comes from
    lx, ly = np.cos(light), np.sin(light)
    if kind < 0.5:  # forest canopy
        n = int(rng.uniform(0.006, 0.03) * width * height / scale**2)
        green = np.array([rng.uniform(40, 90), rng.uniform(70, 130), rng.uniform(30, 70)])
        for _ in range(n):
            r = rng.uniform(2.5, 9) * scale
            c = np.array([rng.uniform(0, width), rng.uniform(0, height)])
            tone = green * rng.uniform(0.6, 1.3) + rng.normal(0, 8, 3)
            cv2.circle(image, tuple((c - 0.35 * r * np.array([lx, ly])).astype(int)), int(r),
                       tuple(float(v) for v in 0.35 * tone), -1, cv2.LINE_AA)  # shadow side
            cv2.circle(image, tuple(c.astype(int)), max(1, int(0.8 * r)),
                       tuple(float(v) for v in tone), -1, cv2.LINE_AA)
            cv2.circle(image, tuple((c + 0.3 * r * np.array([lx, ly])).astype(int)),
                       max(1, int(0.35 * r)), tuple(float(v) for v in np.minimum(1.35 * tone, 255)),
                       -1, cv2.LINE_AA)  # lit side
    elif kind < 0.8:  # scrub: bushes and twigs
        for _ in range(int(rng.integers(40, 200))):
            c = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
            tone = (rng.uniform(30, 90), rng.uniform(50, 110), rng.uniform(25, 60))
            cv2.circle(image, c, int(rng.uniform(3, 14) * scale), tone, -1, cv2.LINE_AA)
        for _ in range(int(rng.integers(100, 600))):
            a = np.array([rng.uniform(0, width), rng.uniform(0, height)])
            heading = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(4, 30) * scale
            b = a + length * np.array([np.cos(heading), np.sin(heading)])
            grey = rng.uniform(15, 70) if rng.random() < 0.7 else rng.uniform(150, 230)
            cv2.line(image, tuple(a.astype(int)), tuple(b.astype(int)),
                     tuple(float(grey + d) for d in rng.normal(0, 6, 3)), 1, cv2.LINE_AA)
    if fine:
        _fine_foliage(rng, image, scale)
    if rng.random() < 0.3:  # sky or calm water, above a horizon or filling the photo
        sky = _sky(rng, width, height)
        if rng.random() < 0.6:  # a horizon: hills or trees below the sky
            wave = cv2.resize(rng.normal(0, 1, (1, 8)).astype(np.float32), (width, 1),
                              interpolation=cv2.INTER_CUBIC)[0]
            line = rng.uniform(0.3, 0.9) * height + rng.uniform(3, 25) * scale * wave
            below = np.arange(height)[:, None] >= line[None, :]
            image = np.where(below[..., None], image, sky)
        else:
            image = sky
    return np.clip(image, 0, 255)


def make_aerial_image(
    rng: np.random.Generator, width: int = 960, height: int = 540, fine: bool = False,
    close: float = 0.0,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One photo in the "aerial" style (see the module doc) and its wire polygons in pixels;
    `fine`: the "canopy" style (fine foliage texture on the ground); `close`: the share of spans
    seen close up, 5-16 px wide round cables (0 draws exactly what it drew without it)."""
    scale = min(width, height) / 360.0  # sizes as in 540x360 inspection photos
    image = _natural_ground(rng, width, height, scale, fine)
    _hard_negatives(rng, image, scale)
    clean = image.copy()
    polygons = []
    for _ in range(rng.integers(1, 4)):
        p0, p1, sag, offset = _span(rng, width, height, 0.05)
        near, far = rng.uniform(5, 30) * scale, rng.uniform(0.3, 1.0)  # perspective: spacing shrinks
        mid = ((p0 + p1) / 2).astype(int)
        local = float(clean[np.clip(mid[1], 0, height - 1), np.clip(mid[0], 0, width - 1)].mean())
        # sunlit metal or a dark wire: dark against sky and bright ground, bright against dark
        bright = local < 70 or (local < 150 and rng.random() < 0.6)
        shadow = rng.random() < 0.3
        width_px = rng.uniform(1.5, 5) * scale
        round_cable = close > 0 and rng.random() < close
        if round_cable:  # close up: wider, and farther apart than wide
            width_px = rng.uniform(5, 16) * scale
            near = max(near, width_px * rng.uniform(1.6, 3))
        for k in range(int(rng.integers(1, 5))):
            centre = catenary(p0 + k * near * offset, p1 + k * near * far * offset, sag, n=96)
            grey = rng.uniform(170, 250) if bright else rng.uniform(15, 90)
            col = tuple(float(np.clip(grey + d, 0, 255)) for d in rng.normal(0, 6, 3))
            cable = None
            if round_cable:  # dark edges, the wire's grey in the core, a glint on the lit side
                rgb = np.array(col)
                cable = (0.55 * rgb, np.minimum(rgb * 1.15 + 10, 250),
                         np.minimum(rgb + rng.uniform(40, 110), 255), rng.uniform(-0.8, 0.8))
            if shadow:
                _draw_shadow(rng, image, clean, centre, width_px, scale, 0.7)
            cuts = []
            if rng.random() < 0.3:  # foliage or the frame hides a stretch
                cuts = sorted(rng.choice(np.arange(8, 88), size=2, replace=False))
            polygons += _draw_stretches(image, centre, cuts, width_px, col, cable)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.0))
    noise = rng.normal(0, rng.uniform(2, 6), image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), polygons


def make_canopy_image(
    rng: np.random.Generator, width: int = 960, height: int = 540
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One photo in the "canopy" style: the "aerial" one with `_fine_foliage` on its ground."""
    return make_aerial_image(rng, width, height, fine=True)


def make_canopy_close_image(
    rng: np.random.Generator, width: int = 960, height: int = 540
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One photo in the "canopy_close" style: the "canopy" one with a quarter of its spans seen
    close up (5-16 px round cables)."""
    return make_aerial_image(rng, width, height, fine=True, close=0.25)


def _ground_plane(rng: np.random.Generator, xy: np.ndarray,
                  scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Float32 (h, w) ground coordinates (u, v) of the pixels at `xy` (2, h, w), in pixels of
    a 540x360 photo at its centre: the ground turned by a random angle and seen tilted (a
    homography, so straight lines stay straight and far things shrink); a pattern written as a
    function of (u, v) is seen in perspective."""
    height, width = xy.shape[1:]
    x, y = xy[0] - width / 2, xy[1] - height / 2
    look, turn = (float(a) for a in rng.uniform(0, 2 * np.pi, 2))
    tilt = rng.uniform(0, 0.9) / max(width, height)
    depth = 1 + tilt * (float(np.cos(look)) * x + float(np.sin(look)) * y)
    c, s = float(np.cos(turn)) / scale, float(np.sin(turn)) / scale
    return (c * x - s * y) / depth, (s * x + c * y) / depth


def _stripe(coord: np.ndarray, at: float, half: float) -> np.ndarray:
    """1 within `half` of `coord == at`, fading to 0 over one unit (a soft painted line)."""
    return np.clip(half + 0.5 - np.abs(coord - at), 0, 1)


def _paving(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Float32 (h, w, 3) slabs on the ground (u, v), in a grid or a running bond, each a
    slightly different tone, with thin dark joints."""
    slab_u = rng.uniform(14, 60)
    slab_v = slab_u * float(rng.choice([0.5, 1.0, 1.0, 1.5]))
    rows = v / slab_v
    row = np.floor(rows)
    along = u / slab_u + float(rng.choice([0.0, 0.5])) * (row % 2)
    col = np.floor(along)
    tones = 1 + rng.normal(0, 0.06, (16, 16)).astype(np.float32)
    tone = tones[row.astype(np.int32) & 15, col.astype(np.int32) & 15]
    gap = np.minimum((0.5 - np.abs(along - col - 0.5)) * slab_u,
                     (0.5 - np.abs(rows - row - 0.5)) * slab_v)
    joint = np.clip(rng.uniform(0.5, 1.8) - gap, 0, 1)
    colour = [(rng.uniform(150, 205),) * 3, (155, 92, 70), (190, 172, 135), (105, 105, 110)][
        int(rng.choice(4, p=[0.5, 0.2, 0.15, 0.15]))]
    colour = np.asarray(colour, np.float32) * (1 + rng.normal(0, 0.05, 3)).astype(np.float32)
    return colour * (tone * (1 - rng.uniform(0.3, 0.6) * joint))[..., None]


def _asphalt(rng: np.random.Generator, width: int, height: int, scale: float) -> np.ndarray:
    """Float32 (h, w, 3) asphalt: dark grey, blotchy, with a fine grain of stones."""
    grain = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0),
                             0.6 * scale)
    texture = (0.08 * _smooth_noise(rng, width, height, 5)
               + 0.05 * _smooth_noise(rng, width, height, 60) + 0.12 * grain)
    colour = rng.uniform(55, 115) * (1 + rng.normal(0, 0.03, 3))
    return (colour.astype(np.float32) * (1 + texture)[..., None]).astype(np.float32)


def _grass(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Float32 (h, w, 3) mown grass: green, blotchy, grainy."""
    texture = (0.15 * _smooth_noise(rng, width, height, 8)
               + 0.12 * rng.normal(0, 1, (height, width)).astype(np.float32))
    colour = np.array([rng.uniform(60, 110), rng.uniform(95, 140), rng.uniform(40, 70)], np.float32)
    return colour * (1 + texture)[..., None]


def _road_paint(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, left: float,
                right: float) -> np.ndarray:
    """Float32 (h, w) in [0, 1]: painted marks on a road between u = `left` and `right`: a solid,
    dashed or double centre line, edge lines, now and then a zebra crossing; or, on a car park
    (a wide road), bay lines."""
    on_road = (u > left) & (u < right)
    half = rng.uniform(1.5, 4.5)
    phase = rng.uniform(0, 500)
    paint = np.zeros(u.shape, np.float32)
    if right - left > 400:  # a car park: bays side by side, one row of them
        bay, row = rng.uniform(40, 70), rng.uniform(-100, 100)
        side = _stripe((u + phase) % bay, bay / 2, half) * (np.abs(v - row - 50) < 50)
        return np.maximum(side, _stripe(v, row, half)) * on_road
    middle = (left + right) / 2
    dash = ((v + phase) % rng.uniform(40, 120)) < rng.uniform(15, 40)
    if rng.random() < 0.2:  # double solid line
        paint = np.maximum(_stripe(u, middle - 2.5 * half, half),
                           _stripe(u, middle + 2.5 * half, half))
    elif rng.random() < 0.85:
        paint = _stripe(u, middle, half) * (dash if rng.random() < 0.6 else 1)
    if rng.random() < 0.5:  # edge lines
        inset = rng.uniform(5, 20)
        paint = np.maximum(paint, np.maximum(_stripe(u, left + inset, half),
                                             _stripe(u, right - inset, half)))
    if rng.random() < 0.3:  # a zebra crossing: bands along the road, across it
        step = rng.uniform(20, 50)
        bands = ((u - left) % step) < step / 2
        paint = np.maximum(paint, bands * (np.abs(v - rng.uniform(-150, 150)) < 40))
    return paint * on_road


def _town_ground(rng: np.random.Generator, xy: np.ndarray, scale: float) -> np.ndarray:
    """Float32 RGB town ground seen from close up, laid out along one tilted ground plane: a
    road or a car park (asphalt, painted marks) between kerbs (a bright stone edge and a dark
    gutter line, both straight) and pavements of slabs, now and then grass; or a square of
    slabs with no road in view."""
    height, width = xy.shape[1:]
    u, v = _ground_plane(rng, xy, scale)
    middle = rng.uniform(-250, 250)
    road = float(rng.choice([rng.uniform(60, 300), 1000.0, 0.0], p=[0.6, 0.15, 0.25]))
    left, right = middle - road / 2, middle + road / 2
    kerb = rng.uniform(6, 16)
    image = np.empty((height, width, 3), np.float32)
    for side in (u < middle, u >= middle):  # pavements: slabs, now and then grass or asphalt
        kind = rng.random()
        if side.any():
            surface = (_paving(rng, u, v) if kind < 0.7 else _grass(rng, width, height)
                       if kind < 0.9 else _asphalt(rng, width, height, scale))
            np.copyto(image, surface, where=side[..., None])
    if road > 0:
        asphalt = _asphalt(rng, width, height, scale)
        paint = _road_paint(rng, u, v, left, right) * np.clip(
            0.8 + 0.4 * _smooth_noise(rng, width, height, 30), 0, 1)  # worn
        colour = np.array([235, 235, 230] if rng.random() < 0.7 else [225, 190, 70], np.float32)
        asphalt += paint[..., None] * (colour - asphalt)
        image = np.where(((u > left) & (u < right))[..., None], asphalt, image)
        stone = rng.uniform(150, 215) * (1 + 0.05 * _smooth_noise(rng, width, height, 40))
        for edge, out in ((left, -1), (right, 1)):  # kerbs: stone, dark gutter, stone joints
            on_kerb = np.clip(np.minimum(kerb - out * (u - edge), out * (u - edge)) + 0.5, 0, 1)
            joints = _stripe((v % 50), 25, 0.6) * rng.uniform(0.2, 0.4)
            image += on_kerb[..., None] * ((stone * (1 - joints))[..., None] - image)
            image *= 1 - rng.uniform(0.3, 0.6) * _stripe(u, edge, rng.uniform(0.5, 1.5))[..., None]
    grime = sum(amp * _smooth_noise(rng, width, height, cells)
                for cells, amp in ((4, 0.1), (25, 0.06), (120, 0.04)))  # stains, wear, dirt
    return image * (1 + rng.uniform(0.5, 1.5) * grime)[..., None]


def _segment(image: np.ndarray, p: np.ndarray, q: np.ndarray, colour: tuple,
             thickness: float) -> None:
    """An anti-aliased straight line from p to q (pixel coordinates as `draw_wire` takes them),
    at subpixel positions."""
    a, b = (np.round((np.asarray(r) - 0.5) * 16).astype(int) for r in (p, q))
    cv2.line(image, tuple(a), tuple(b), colour, max(1, int(round(thickness))), cv2.LINE_AA, 4)


def _draw_cable(image: np.ndarray, centre: np.ndarray, width_px, edge: np.ndarray,
                core: np.ndarray, glint: np.ndarray, lit: float) -> None:
    """A round cable (or pole) `width_px` across (a number, or one per point) along `centre`:
    nested bands from both edges in to the line `lit` (-1..1 across it) whose colour goes from
    `edge` to `core` as a lit cylinder's does, then a soft sheen and a thin `glint` on that line.
    The outermost band is `wire_polygon(centre, width_px)`: the label's outline."""
    half = np.reshape(width_px, (-1, 1)) / 2
    normal = wire_polygon(centre, 2.0)[: len(centre)] - centre
    peak = lit * 0.5 * half
    steps = int(np.clip(np.max(half) / 0.8, 3, 14))

    def band(lo, hi):
        return np.concatenate([centre + lo * normal, (centre + hi * normal)[::-1]])

    for i in range(steps):
        f = i / steps
        weight = np.sqrt(1 - (1 - (i + 0.5) / steps) ** 2)  # how squarely the surface faces us
        draw_wire(image, band(-half + (peak + half) * f, half - (half - peak) * f),
                  tuple(float(c) for c in edge + (core - edge) * weight))
    for shine, mix in ((0.2, 0.5), (0.06, 1.0)):  # a soft sheen, a sharp glint in it
        shine = np.maximum(0.4, shine * half)
        draw_wire(image, band(peak - shine, peak + shine),
                  tuple(float(c) for c in core + (glint - core) * mix))


def _building(rng: np.random.Generator, image: np.ndarray, dark: np.ndarray, xy: tuple,
              scale: float, sun: np.ndarray) -> None:
    """A roof or a facade (never labelled): a quadrilateral with long straight edges, tiles in
    rows or windows in a grid, a bright or dark edge and a gutter along its lower edge; its
    shadow (into `dark`) falls away from `sun`."""
    height, width = image.shape[:2]
    origin = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    angle = rng.uniform(0, 2 * np.pi)
    along = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-along[1], along[0]]) + rng.normal(0, 0.15, 2)  # a little skewed
    length, depth = rng.uniform(0.4, 1.2) * width, rng.uniform(0.2, 0.8) * height
    far = rng.uniform(0.7, 1.1)  # perspective: the far edge shorter or longer
    corners = np.array([origin - length / 2 * along, origin + length / 2 * along,
                        origin + far * length / 2 * along + depth * across,
                        origin - far * length / 2 * along + depth * across])
    ox, oy, ax, ay, cx, cy = (float(c) for c in (*origin, *along, *across))
    s = (xy[0] - ox) * ax + (xy[1] - oy) * ay  # along the lower edge
    t = (xy[0] - ox) * cx + (xy[1] - oy) * cy  # away from it
    if rng.random() < 0.6:  # a roof: rows of tiles, each row's lower edge in shadow
        pitch = rng.uniform(5, 14) * scale
        row = np.floor(t / pitch)
        slits = _stripe(((s / (pitch * rng.uniform(0.7, 1.3)) + 0.5 * (row % 2)) % 1) * pitch,
                        pitch / 2, 0.4)
        tone = (0.7 + 0.35 * (t % pitch) / pitch) * (1 - 0.35 * slits)
        colour = [(150, 75, 55), (70, 75, 85), (120, 120, 120), (110, 80, 60)][int(rng.integers(4))]
    else:  # a facade: windows in a grid, dark glass in bright frames
        pw, ph = rng.uniform(25, 60) * scale, rng.uniform(30, 70) * scale
        win = np.minimum(_stripe(s % pw, pw / 2, pw / 4), _stripe(t % ph, ph / 2, ph / 4))
        frame = np.minimum(_stripe(s % pw, pw / 2, pw / 4 + 2), _stripe(t % ph, ph / 2, ph / 4 + 2))
        tone = 1 + 0.25 * (frame - win) - 0.6 * win
        colour = (rng.uniform(120, 220),) * 3 * (1 + rng.normal(0, 0.06, 3))
    texture = np.asarray(colour, np.float32) * tone[..., None].astype(np.float32)
    cast = np.zeros_like(dark)
    draw_wire(cast, corners - sun * rng.uniform(10, 60) * scale, rng.uniform(0.3, 0.55))
    cover = np.zeros_like(dark)
    draw_wire(cover, corners, 1.0)
    np.maximum(dark, cast * (1 - cover), out=dark)
    image += cover[..., None] * (texture - image)
    edge = (rng.uniform(170, 240) if rng.random() < 0.5 else rng.uniform(20, 60),) * 3
    for a, b in ((0, 1), (1, 2), (3, 0)):
        _segment(image, corners[a], corners[b], edge, rng.uniform(1, 3) * scale)
    if rng.random() < 0.7:  # a gutter just outside the lower edge, and its dark underside
        out = -across / np.linalg.norm(across) * rng.uniform(2, 6) * scale
        gutter = (rng.uniform(150, 235) if rng.random() < 0.6 else rng.uniform(40, 90),) * 3
        _segment(image, corners[0] + out, corners[1] + out, gutter, rng.uniform(2, 5) * scale)
        _segment(image, corners[0] + 2 * out, corners[1] + 2 * out, (25.0,) * 3, 1)


def _railing(rng: np.random.Generator, image: np.ndarray, dark: np.ndarray, scale: float,
             sun: np.ndarray) -> None:
    """A railing or fence (never labelled): many thin parallel bars under one or two long thin
    rails, and their shadow (into `dark`) away from `sun`."""
    height, width = image.shape[:2]
    a = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    heading = rng.uniform(0, 2 * np.pi)
    b = a + rng.uniform(0.4, 1.3) * width * np.array([np.cos(heading), np.sin(heading)])
    up = heading + rng.uniform(0.6, 2.5)
    up = rng.uniform(15, 60) * scale * np.array([np.cos(up), np.sin(up)])
    tone = rng.uniform(25, 80) if rng.random() < 0.6 else rng.uniform(160, 225)
    colour = tuple(float(tone + d) for d in rng.normal(0, 6, 3))
    bar, rail = rng.uniform(1, 3) * scale, rng.uniform(2, 4) * scale
    drop = -sun * rng.uniform(10, 40) * scale
    shade = (float(rng.uniform(0.3, 0.5)),)
    rails = [(1.0, rail)] + ([(0.0, rail)] if rng.random() < 0.5 else [])
    bars = np.linspace(0, 1, int(np.linalg.norm(b - a) / (rng.uniform(5, 16) * scale)))
    for target, value, offset in ((dark, shade, drop), (image, colour, 0.0)):
        for t in bars:
            p = a + t * (b - a) + offset
            _segment(target, p, p + up, value, bar)
        for level, thick in rails:
            _segment(target, a + level * up + offset, b + level * up + offset, value, thick)


def _pole(rng: np.random.Generator, image: np.ndarray, dark: np.ndarray, scale: float,
          sun: np.ndarray) -> None:
    """A pole (never labelled): a thick straight bar 6-25 px across, shaded round, wider at its
    top (nearer the camera), which ends in the photo; its shadow runs from its foot away from
    `sun` (into `dark`)."""
    height, width = image.shape[:2]
    top = np.array([rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height])
    heading = rng.uniform(0, 2 * np.pi)
    foot = top + rng.uniform(0.3, 1.2) * height * np.array([np.cos(heading), np.sin(heading)])
    across = rng.uniform(6, 25) * scale
    centre = np.linspace(top, foot, 16)
    shadow = np.linspace(foot, foot - sun * rng.uniform(0.5, 1.5) * np.linalg.norm(foot - top), 16)
    draw_wire(dark, wire_polygon(shadow, 0.8 * across), rng.uniform(0.35, 0.6))
    base = [np.full(3, rng.uniform(140, 200)), np.array([110.0, 80, 55]),
            np.array([60.0, 70, 65])][int(rng.integers(3))] * (1 + rng.normal(0, 0.03, 3))
    _draw_cable(image, centre, np.linspace(across, across * rng.uniform(0.55, 0.9), 16),
                0.45 * base, np.minimum(1.15 * base, 255), np.minimum(1.5 * base + 30, 255),
                rng.uniform(-1, 1))


def _bare_tree(rng: np.random.Generator, image: np.ndarray, scale: float) -> None:
    """A bare tree from close up (never labelled): thick limbs from one point, bending and
    thinning, each ending in a fork of thin branches (`_branch`)."""
    height, width = image.shape[:2]
    root = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    grey = rng.uniform(25, 75)
    tone = (grey * 1.1, grey, grey * 0.85)
    for _ in range(int(rng.integers(3, 7))):
        p, heading, thick = root, rng.uniform(0, 2 * np.pi), rng.uniform(3, 9) * scale
        for _ in range(3):
            heading += rng.normal(0, 0.3)
            q = p + rng.uniform(15, 40) * scale * np.array([np.cos(heading), np.sin(heading)])
            _segment(image, p, q, tone, thick)
            p, thick = q, thick * 0.65
        _branch(rng, image, p, heading, rng.uniform(25, 70) * scale, int(rng.integers(2, 4)), tone)


def _hedges(rng: np.random.Generator, image: np.ndarray, dark: np.ndarray, scale: float,
            sun: np.ndarray) -> None:
    """Hedges and bushes (never labelled): dark green blobs of leafy texture, each with its
    shadow (into `dark`) away from `sun`."""
    height, width = image.shape[:2]
    cover = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        points = np.cumsum(rng.normal(0, 0.25 * width, (int(rng.integers(1, 4)), 2)), axis=0)
        points += [rng.uniform(0, width), rng.uniform(0, height)]
        cv2.polylines(cover, [points.astype(np.int32)], False, 1.0,
                      int(rng.uniform(30, 100) * scale), cv2.LINE_AA)
    leaves = (0.35 * _smooth_noise(rng, width, height, int(width / (4 * scale)))
              + 0.25 * _smooth_noise(rng, width, height, int(width / (12 * scale))))
    cover = cv2.GaussianBlur(cover, (0, 0), 6 * scale)
    cover = np.clip((cover - 0.5 + 0.4 * leaves) * 4, 0, 1)  # a ragged leafy edge
    shift = np.float32([[1, 0, 0], [0, 1, 0]])
    shift[:, 2] = -sun * rng.uniform(5, 20) * scale
    cast = cv2.warpAffine(cover, shift, (width, height))
    np.maximum(dark, rng.uniform(0.3, 0.5) * cast * (1 - cover), out=dark)
    green = np.array([rng.uniform(25, 60), rng.uniform(50, 100), rng.uniform(20, 50)], np.float32)
    texture = green * np.clip(1 + leaves, 0.2, 2)[..., None]
    image += cover[..., None] * (texture - image)


def _sky_patch(rng: np.random.Generator, image: np.ndarray, xy: tuple) -> np.ndarray:
    """Sky over the top of the photo, as when the camera looks up, above a straight edge or a
    roofline of steps; drawn in place, returns the (h, w) bool mask of the sky."""
    height, width = image.shape[:2]
    level = rng.uniform(0.1, 0.6) * height
    line = level + rng.uniform(-0.3, 0.3) * (xy[0] - width / 2)
    if rng.random() < 0.5:  # a roofline: flat stretches at other heights
        steps = np.sort(rng.uniform(0, width, int(rng.integers(2, 6))))
        line = line + rng.uniform(-0.15, 0.15, len(steps) + 1)[
            np.searchsorted(steps, xy[0])] * height
    sky = xy[1] < line
    image[sky] = _sky(rng, width, height).astype(np.float32)[sky]
    return sky


def _wire_colours(rng: np.random.Generator) -> tuple:
    """(edge, core, glint) RGB of a conductor: dark grey or black mostly, now and then bright
    aluminium, slightly tinted."""
    tint = 1 + rng.normal(0, 0.04, 3)
    if rng.random() < 0.75:
        base = rng.uniform(25, 75) * tint
        return 0.45 * base, 1.3 * base + 10, np.minimum(1.3 * base + rng.uniform(50, 120), 255)
    base = rng.uniform(120, 190) * tint
    return 0.55 * base, np.minimum(1.2 * base, 235), np.full(3, rng.uniform(235, 255))


def make_urban_image(
    rng: np.random.Generator, width: int = 960, height: int = 540
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One photo in the "urban" style (see the module doc) and its wire polygons in pixels."""
    scale = min(width, height) / 360.0  # sizes as in 540x360 inspection photos
    xy = np.mgrid[0:height, 0:width][::-1].astype(np.float32)
    town = rng.random() >= 0.3
    if town:
        image = _town_ground(rng, xy, scale)
    else:  # rural: the aerial or canopy ground with its clutter (and perhaps its own sky)
        image = _natural_ground(rng, width, height, scale, rng.random() < 0.5).astype(np.float32)
        _hard_negatives(rng, image, scale)
    sun = rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(sun), np.sin(sun)])
    dark = np.zeros((height, width), np.float32)  # how much shadows darken the ground
    sky = np.zeros((height, width), bool)
    if town:
        for _ in range(int(rng.choice(3, p=[0.5, 0.35, 0.15]))):
            _building(rng, image, dark, xy, scale, sun)
        if rng.random() < 0.4:
            _hedges(rng, image, dark, scale, sun)
        if rng.random() < 0.25:
            sky = _sky_patch(rng, image, xy)
        for _ in range(int(rng.choice(3, p=[0.5, 0.35, 0.15]))):
            _railing(rng, image, dark, scale, sun)
    for _ in range(int(rng.choice(3, p=[0.65, 0.25, 0.1]))):
        _bare_tree(rng, image, scale)
    for _ in range(int(rng.choice(3, p=[0.5, 0.35, 0.15]))):
        _pole(rng, image, dark, scale, sun)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    polygons, layers = [], []
    for _ in range(int(rng.integers(1, 4))):
        if len(polygons) >= 6:
            break
        p0, p1, sag, offset = _span(rng, width, height, 0.06)
        wide = rng.random() < 0.5
        lo, hi = (8, 30) if wide else (1, 4)  # close up, or as in the other styles
        across = rng.uniform(lo, hi) * scale
        # spacing: more than the wires' width, at the far end too (perspective)
        near, far = across * rng.uniform(1.6, 4) + rng.uniform(4, 25) * scale, rng.uniform(0.75, 1)
        count = min(int(rng.integers(1, 5)), 6 - len(polygons))
        reach = count * near * (p1 - p0) / np.linalg.norm(p1 - p0)  # no wire ends in the photo
        p0, p1 = p0 - reach, p1 + reach
        drop = -sun * rng.uniform(15, 90) * scale if rng.random() < 0.6 else None
        paint = np.zeros_like(image)
        alpha, cast = np.zeros_like(dark), np.zeros_like(dark)
        for k in np.arange(count) - (count - 1) / 2:  # the bundle centred on the span
            centre = catenary(p0 + k * near * offset, p1 + k * near * far * offset, sag, n=96)
            width_px = float(np.clip(across * rng.uniform(0.9, 1.1), lo * scale, hi * scale))
            polygon = wire_polygon(centre, width_px)
            if wide:  # a round cable, lit on the side that faces the sun
                normal = wire_polygon(centre, 2.0)[48] - centre[48]
                lit = np.sign(normal @ sun) * rng.uniform(0.2, 0.8)
                _draw_cable(paint, centre, width_px, *_wire_colours(rng), lit)
            else:
                value = contrasting_grey(grey, centre, rng.uniform(20, 80), rng.random, 110)
                draw_wire(paint, polygon, tuple(float(np.clip(value + d, 0, 255))
                                                for d in rng.normal(0, 5, 3)))
            draw_wire(alpha, polygon, 1.0)
            if drop is not None:
                draw_wire(cast, wire_polygon(centre + drop, width_px * rng.uniform(0.8, 1.2)),
                          rng.uniform(0.3, 0.55))
            polygons.append(polygon)
        if drop is not None:
            np.maximum(dark, cv2.GaussianBlur(cast, (0, 0), 0.5 * scale + 0.15 * across),
                       out=dark)
        blur = rng.uniform(0.3, 1.0) * scale if rng.random() < 0.5 else 0.0
        if rng.random() < 0.3:  # partly out of focus: sharp on one side, soft on the other
            ramp = np.clip(((xy[0] - width / 2) * rng.normal() + (xy[1] - height / 2)
                            * rng.normal()) / width + 0.5, 0, 1)
            soft = rng.uniform(1, 2.5) * scale
            paint += ramp[..., None] * (cv2.GaussianBlur(paint, (0, 0), soft) - paint)
            alpha += ramp * (cv2.GaussianBlur(alpha, (0, 0), soft) - alpha)
        elif blur > 0:
            paint, alpha = (cv2.GaussianBlur(x, (0, 0), blur) for x in (paint, alpha))
        layers.append((paint, alpha))
    image *= 1 - np.where(sky, 0, dark)[..., None]
    for paint, alpha in layers:
        image = image * (1 - alpha[..., None]) + paint
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 0.8))
    image += rng.uniform(1, 4) * rng.standard_normal(image.shape, np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), polygons


STYLES = {"demo": make_image, "real": make_real_image, "aerial": make_aerial_image,
          "canopy": make_canopy_image, "canopy_close": make_canopy_close_image,
          "urban": make_urban_image}


def generate(
    out: str | Path,
    num: int = 48,
    seed: int = 0,
    width: int = 960,
    height: int = 540,
    quality: int = 92,
    style: str = "demo",
) -> Path:
    """Write `num` JPEGs to `out`/images and ONE platform JSON `out`/annotations.json; return its path.

    style: "demo" (the demo's wide, visible wires), "real" (thin, low-contrast, occluded
    wires among hard negatives), "aerial" (natural ground texture, sky; see the module doc),
    "canopy" (the aerial one with fine foliage texture: thin curved gaps, bare branches),
    "canopy_close" (the canopy one with a quarter of its spans 5-16 px round cables) or
    "urban" (close-up town and road scenes with straight clutter, thin and wide round wires)."""
    if style not in STYLES:
        raise ValueError(f"style {style!r}; known: {', '.join(STYLES)}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(num):
        rng = np.random.default_rng([seed, i])  # each image depends only on (seed, i)
        image, polygons = STYLES[style](rng, width, height)
        name = f"synthetic_{i:04d}.jpg"
        ok, data = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise OSError(f"{out / 'images' / name}: JPEG encoding failed")
        data.tofile(str(out / "images" / name))
        entries.append(
            {
                "uri": f"synthetic-bucket/{name}",
                "width": width,
                "height": height,
                "polygons": polygons,
            }
        )
    json_path = out / "annotations.json"
    write_platform_json(json_path, entries)
    return json_path

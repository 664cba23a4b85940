"""Generated wires are drawn exactly where the converter rasterises their polygons."""

from __future__ import annotations

import numpy as np
import pytest

from lib.datasets.annotations import ImageAnnotation, Shape, rasterise
from lib.datasets.wire_drawing import draw_wire, wire_polygon


@pytest.mark.parametrize("axis", [0, 1])
def test_drawn_wire_and_rasterised_label_share_their_centre_line(axis):
    rng = np.random.default_rng(axis)
    offsets = []
    for _ in range(40):
        pos, width = rng.uniform(20, 70), rng.uniform(4, 10)
        centre = np.stack([np.linspace(5, 95, 16), np.full(16, pos)], axis=1)
        if axis == 1:  # a vertical wire
            centre = centre[:, ::-1]
        polygon = wire_polygon(centre, width)
        image = np.zeros((100, 100, 3), np.float32)
        draw_wire(image, polygon, (1.0, 1.0, 1.0))
        ann = ImageAnnotation(source="t", image="t", shapes=[Shape("polygon", polygon, "wire")])
        label = rasterise(ann, 100, 100, {"wire": 1}).astype(np.float64)
        drawn = image[..., 0].astype(np.float64)
        coords = np.arange(100)
        profile_l, profile_d = label.sum(axis=1 - axis), drawn.sum(axis=1 - axis)
        offsets.append((coords * profile_l).sum() / profile_l.sum()
                       - (coords * profile_d).sum() / profile_d.sum())
    # within a tenth of a pixel on average (it was half a pixel before the fix)
    assert abs(np.mean(offsets)) < 0.1

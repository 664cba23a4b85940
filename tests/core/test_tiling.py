"""Tiled native-resolution inference: tile grid, blending, and equality with whole-image inference."""

import numpy as np
import pytest
import torch
from torch import nn

from lib.config import get_config
from lib.core.inference import batch_scores
from lib.core.tiling import (
    edge_ramp,
    iter_tiled_rows,
    tile_origins,
    tiled_inference,
    tiled_predict,
)
from lib.datasets.base import normalise
from lib.models import get_seg_model
from tests.conftest import OFFICIAL


def test_tile_origins_are_aligned_overlap_and_reach_the_end():
    assert tile_origins(100, 128, 32) == [0]
    origins = tile_origins(3078, 1024, 256, align=32)
    assert origins[0] == 0 and origins[-1] == 3078 - 1024
    assert all(o % 32 == 0 for o in origins[:-1])
    assert all(b - a <= 1024 - 256 for a, b in zip(origins, origins[1:]))
    with pytest.raises(ValueError):
        tile_origins(500, 64, 64)


def test_edge_ramp_is_positive_and_one_inside():
    w = edge_ramp(10, 4, 2)
    assert (w > 0).all() and w[4:8].eq(1).all()
    assert w[0] < w[1] < w[2] < w[3] < 1 and w[9] < w[8] < 1


class ShortSight(nn.Module):
    """A fully convolutional net with a small receptive field and output stride 4."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(8, 2, 1),
        )

    def forward(self, x):
        out = self.body(x)
        return [out * 0.5, out]


def _safe_mask(height, width, tile, overlap, margin):
    """Pixels at least `margin` away from the inner edges of every tile that covers them."""
    bad = np.zeros((height, width), bool)
    ys, xs = tile_origins(height, tile, overlap), tile_origins(width, tile, overlap)
    for y0 in ys:
        for x0 in xs:
            inner = np.zeros((tile, tile), bool)
            if y0 > 0:
                inner[:margin] = True
            if y0 + tile < height:
                inner[-margin:] = True
            if x0 > 0:
                inner[:, :margin] = True
            if x0 + tile < width:
                inner[:, -margin:] = True
            bad[y0 : y0 + tile, x0 : x0 + tile] |= inner
    return ~bad


def test_tiled_equals_whole_image_where_the_receptive_field_fits():
    model = ShortSight().eval()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (192, 320, 3), dtype=np.uint8)
    kw = dict(flip=True, align_corners=False, output_index=-1)
    whole = batch_scores(model, normalise(image)[None], **kw)
    tiled = tiled_inference(
        model,
        image,
        num_classes=2,
        tile_size=(128, 128),
        overlap=64,
        scales=[1.0],
        tile_batch=3,
        **kw,
    )
    assert tiled.shape == whole.shape == (1, 2, 192, 320)
    safe = torch.from_numpy(_safe_mask(192, 320, 128, 64, margin=16))
    assert safe.float().mean() > 0.3
    diff = (tiled - whole).abs()[0].amax(0)
    assert diff[safe].max() < 1e-4
    # blending keeps the seams small even where a tile's border effects are averaged in
    assert diff.max() < 0.5 * whole.abs().max()


def _small_ocr():

    torch.manual_seed(0)
    return get_seg_model(get_config(OFFICIAL / "w18s1_ocr.yaml")).eval()


def test_single_tile_is_the_whole_image_prediction_on_hrnet_ocr():
    model = _small_ocr()
    image = np.random.default_rng(1).integers(0, 256, (96, 160, 3), dtype=np.uint8)
    whole = batch_scores(model, normalise(image)[None], flip=False)
    tiled = tiled_inference(model, image, num_classes=2, tile_size=(512, 512), overlap=64)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-6)


def test_bands_cover_the_photo_in_order_and_batching_does_not_matter():
    model = _small_ocr()
    image = np.random.default_rng(2).integers(0, 256, (200, 264, 3), dtype=np.uint8)
    kw = dict(num_classes=2, tile_size=(128, 128), overlap=32, scales=[0.75, 1.0], flip=True)
    bands = [(y0, s.shape) for y0, s in iter_tiled_rows(model, image, tile_batch=1, **kw)]
    assert bands[0][0] == 0 and sum(shape[1] for _, shape in bands) == 200
    assert all(b[0] == a[0] + a[1][1] for a, b in zip(bands, bands[1:]))
    labels = tiled_predict(model, image, tile_batch=4, **kw)
    full = tiled_inference(model, image, tile_batch=1, **kw)
    assert labels.dtype == np.uint8 and labels.shape == (200, 264)
    np.testing.assert_array_equal(labels, full[0].argmax(0).numpy())

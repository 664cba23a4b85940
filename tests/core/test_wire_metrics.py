"""Wire precision / recall / F1 with tolerance and clDice against hand-computed cases."""

import math

import cv2
import numpy as np
import pytest
import torch

from lib.config import get_config
from lib.core import evaluation
from lib.core.evaluation import metrics_table
from lib.core.wire_metrics import (
    WireMetrics,
    scores_from_counts,
    skeletonize,
    tolerance_pixels,
    wire_counts,
    wire_metrics_from_cfg,
)


def _hline(shape, row, cols, width=1):
    mask = np.zeros(shape, bool)
    mask[row : row + width, cols[0] : cols[1]] = True
    return mask


def test_tolerance_in_pixels_or_fraction_of_the_diagonal():
    assert tolerance_pixels(3, 100, 200) == 3.0
    assert tolerance_pixels(0.0075, 360, 540) == pytest.approx(0.0075 * math.hypot(360, 540))
    with pytest.raises(ValueError):
        tolerance_pixels(-1, 10, 10)


def test_one_pixel_shift_inside_the_tolerance_scores_f1_one():
    label = _hline((40, 60), 20, (5, 55))
    pred = _hline((40, 60), 21, (5, 55))
    s = scores_from_counts(wire_counts(pred, label, tolerance_px=1.0))
    assert s["precision"] == s["recall"] == s["f1"] == 1.0
    strict = scores_from_counts(wire_counts(pred, label, tolerance_px=0.0))
    assert strict["f1"] == 0.0


def test_shift_beyond_the_tolerance_and_half_a_wire():
    label = _hline((40, 60), 20, (0, 60))
    far = scores_from_counts(wire_counts(_hline((40, 60), 24, (0, 60)), label, 3.0))
    assert far["precision"] == far["recall"] == far["f1"] == 0.0
    # half of the wire found, nothing false: P = 1, R = 31/60 (30 columns + 1 within 1 px)
    half = scores_from_counts(wire_counts(_hline((40, 60), 20, (0, 30)), label, 1.0))
    assert half["precision"] == 1.0
    assert half["recall"] == pytest.approx(31 / 60)
    assert half["f1"] == pytest.approx(2 * (31 / 60) / (1 + 31 / 60))


def test_empty_prediction_and_empty_label():
    empty = np.zeros((8, 8), bool)
    assert scores_from_counts(wire_counts(empty, empty, 1.0))["f1"] == 1.0
    s = scores_from_counts(wire_counts(empty, _hline((8, 8), 3, (0, 8)), 1.0))
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 0.0, 0.0)


def test_skeleton_of_a_thick_bar_is_one_pixel_wide_and_long():
    bar = _hline((30, 80), 10, (10, 70), width=5)
    skel = skeletonize(bar)
    assert skel.sum() >= 50 and (skel & ~bar).sum() == 0
    assert skel.sum(axis=0).max() == 1  # one pixel per column
    ring = np.zeros((40, 40), np.uint8)
    cv2.circle(ring, (20, 20), 12, 1, 3)
    skel_ring = skeletonize(ring.astype(bool))
    count, _ = cv2.connectedComponents(skel_ring.astype(np.uint8), connectivity=8)
    assert count == 2  # the loop stays one closed component


def test_cldice_penalises_a_broken_wire_more_than_a_thinner_one():
    label = _hline((30, 80), 10, (0, 80), width=5)
    thinner = _hline((30, 80), 11, (0, 80), width=3)
    broken = label.copy()
    broken[:, 30:50] = False
    s_thin = scores_from_counts(wire_counts(thinner, label, 1.0))
    s_broken = scores_from_counts(wire_counts(broken, label, 1.0))
    assert s_thin["cldice"] == pytest.approx(1.0, abs=0.03)
    assert s_broken["topo_precision"] == 1.0 and s_broken["topo_sensitivity"] < 0.8
    assert s_broken["cldice"] < s_thin["cldice"]


def test_accumulator_pools_counts_and_ignores_the_ignore_label():
    metrics = WireMetrics(wire_classes=[1], tolerance=1.0, ignore_label=255)
    label = _hline((20, 40), 10, (0, 40)).astype(np.uint8)
    label[:, 30:] = 255  # ignored region: a prediction there is no false positive
    pred = np.zeros((20, 40), np.int64)
    pred[10, :30] = 1
    pred[2, 30:] = 1
    first = metrics.update(torch.from_numpy(pred), torch.from_numpy(label))
    assert first["f1"] == 1.0
    metrics.update(np.zeros((20, 40), np.int64), _hline((20, 40), 5, (0, 10)).astype(np.uint8))
    total = metrics.compute()
    assert total["precision"] == 1.0 and total["recall"] == pytest.approx(30 / 40)
    assert "F1" in str(metrics)


def test_config_picks_the_wire_class_of_the_power_line_dataset():
    metrics = wire_metrics_from_cfg(get_config(opts=["DATASET.DATASET", "daodixian_seg"]))
    assert metrics.wire_classes == (1,) and metrics.tolerance == 0.0075
    assert wire_metrics_from_cfg(get_config()) is None  # cityscapes: no wires
    given = get_config(opts=["WIRE.CLASSES", "[11, 12]", "WIRE.TOLERANCE_PX", "3"])
    metrics = wire_metrics_from_cfg(given)
    assert metrics.wire_classes == (11, 12) and metrics.tolerance == 3.0


class _OneWire(torch.utils.data.Dataset):
    """One 32x48 image whose first channel marks row 10; its label has the wire on row 11."""

    def __len__(self):
        return 1

    def __getitem__(self, i):
        image = -torch.ones(3, 32, 48)
        image[0, 10] = 1.0
        label = torch.zeros(32, 48, dtype=torch.long)
        label[11] = 1
        return image, label, np.zeros(3), "one"


class _Threshold(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.cat([-x[:, :1], x[:, :1]], 1) * self.w


def test_test_tool_scores_wires_next_to_miou():

    loader = torch.utils.data.DataLoader(_OneWire(), batch_size=1)
    kw = dict(
        num_classes=2, ignore_label=255, scales=[1.0], flip=False, base_size=48, crop_size=(32, 48)
    )
    metrics = evaluation.testval(_Threshold(), loader, wire_metrics=WireMetrics([1], 1.0), **kw)
    assert metrics["wire"]["f1"] == 1.0 and metrics["iou"][1] == 0.0  # shifted by one pixel
    assert "wire f1" in metrics_table(metrics)

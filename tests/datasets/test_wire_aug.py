"""The opt-in wire augmentations: geometry keeps image and label together; pasted wires are
labelled where they are drawn; the defaults change nothing."""

from __future__ import annotations

import random

import numpy as np

from lib.config import get_config
from lib.datasets import build_dataset
from lib.datasets.wire_aug import WireAugment, paste_wires, wire_augment_from_cfg
from tests.tools.conftest import DEMO_CFG, tiny_data, tiny_opts  # noqa: F401 (the fixture)


def _crop(h=96, w=128):
    image = np.full((h, w, 3), 120, np.uint8)
    label = np.zeros((h, w), np.int64)
    image[:, 60:63] = 30  # a dark vertical wire, labelled
    label[:, 60:63] = 1
    return image, label


def test_defaults_are_off():
    aug = wire_augment_from_cfg(get_config(DEMO_CFG))
    assert not aug.active


def test_rotation_moves_image_and_label_together():
    image, label = _crop()
    out_image, out_label = WireAugment(rotate=180)(image, label, random.Random(3))
    assert out_label.dtype == label.dtype and out_label.shape == label.shape
    dark = out_image[..., 0] < 75
    wire = out_label == 1
    assert wire.sum() > 100 and not np.array_equal(wire, label == 1)  # it did rotate
    assert (dark & wire).sum() / wire.sum() > 0.85  # and the label followed the wire


def test_pasted_wires_are_labelled_where_drawn_and_ignore_stays():
    image = np.full((120, 160, 3), 150, np.uint8)
    label = np.zeros((120, 160), np.int64)
    label[:10] = 255
    out_image, out_label = paste_wires(image, label, random.Random(0))
    wire = out_label == 1
    changed = np.abs(out_image.astype(int) - 150).max(axis=2) > 10
    assert wire.sum() > 100
    assert (out_label[:10] == 255).all()  # ignored pixels stay ignored
    assert (changed[wire]).mean() > 0.9  # labelled pixels were drawn
    assert (wire[10:][changed[10:]]).mean() > 0.5  # and most drawn pixels are labelled


def test_photometric_steps_keep_the_label_and_are_seeded():
    image, label = _crop()
    aug = WireAugment(color_jitter=0.4, blur=1.0, noise=1.0, jpeg=1.0)
    a = aug(image, label, random.Random(7))
    b = aug(image, label, random.Random(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], label)
    assert not np.array_equal(a[0], image) and a[0].dtype == np.uint8


def test_dataset_applies_the_keys(tiny_data):  # noqa: F811

    opts = tiny_opts(tiny_data, tiny_data)
    plain = build_dataset(get_config(DEMO_CFG, opts), "val")
    wide = build_dataset(get_config(DEMO_CFG, [*opts, "WIRE.LABEL_DILATE", "2"]), "val")
    a, b = plain[0][1], wide[0][1]
    assert ((a == 1) <= (b == 1)).all() and (b == 1).sum() > (a == 1).sum()
    assert ((a == 255) == (b == 255)).all()  # ignored pixels stay ignored

    cfg = get_config(DEMO_CFG, [*opts, "TRAIN.AUG_ROTATE", "180", "TRAIN.AUG_PASTE_WIRES", "1.0"])
    train = build_dataset(cfg, "train")
    assert train.wire_augment is not None and train.wire_augment.rotate == 180
    assert build_dataset(get_config(DEMO_CFG, opts), "train").wire_augment is None
    random.seed(0)
    image, label, _, _ = train[0]
    assert image.shape[-2:] == label.shape and (label == 1).any()

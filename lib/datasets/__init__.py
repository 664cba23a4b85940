"""Datasets chosen by DATASET.DATASET through the DATASETS registry, and label/prediction I/O."""

from __future__ import annotations

import os

from yacs.config import CfgNode

from lib.config import wire_classes
from lib.datasets.base import DatasetError, LabelOptions, ListDataset, TrainTransform
from lib.datasets.cityscapes import CityscapesDataset
from lib.datasets.daodixian import PowerLineDataset
from lib.datasets.wire_aug import wire_augment_from_cfg

__all__ = ["DATASETS", "DatasetError", "build_dataset", "label_options", "train_transform"]

DATASETS = {
    "cityscapes": CityscapesDataset,
    "daodixian_seg": PowerLineDataset,
    "list": ListDataset,
}
_LISTS = {"train": "TRAIN_SET", "extra": "EXTRA_TRAIN_SET", "mix": "MIX_SET", "val": "TEST_SET",
          "test": "TEST_SET"}


def build_dataset(cfg: CfgNode, split: str) -> ListDataset:
    """The dataset of `split` (train | extra | mix: augmented; val | test: whole images) from
    `cfg`; mix (DATASET.MIX_SET) is relative to DATASET.MIX_ROOT when that is set."""
    if split not in _LISTS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_LISTS)}")
    name = cfg.DATASET.DATASET
    if name not in DATASETS:
        raise DatasetError(
            f"unknown DATASET.DATASET {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        )
    list_key = _LISTS[split]
    list_file = cfg.DATASET[list_key]
    if not list_file:
        raise DatasetError(f"DATASET.{list_key} is empty, so there is no {split!r} list")
    augment = split in ("train", "extra", "mix")
    root = cfg.DATASET.MIX_ROOT if split == "mix" and cfg.DATASET.MIX_ROOT else cfg.DATASET.ROOT
    return DATASETS[name](
        root=os.path.join(root, name),
        list_path=os.path.join(root, list_file),
        num_classes=cfg.DATASET.NUM_CLASSES,
        ignore_label=cfg.TRAIN.IGNORE_LABEL,
        augment=augment,
        transform=train_transform(cfg, augment),
        labels=label_options(cfg, augment),
        zoom=cfg.TEST.ZOOM if not augment else 1.0,
        class_weights=list(cfg.DATASET.CLASS_WEIGHTS) or None,
        skip_bad_samples=cfg.DATASET.SKIP_BAD_SAMPLES,
        cache_dir=cfg.DATASET.CACHE_DIR or None,
    )


def train_transform(cfg: CfgNode, augment: bool = True) -> TrainTransform:
    """How the training samples of `cfg` are made (the TRAIN section; DATASET.REDUCED_DECODE,
    LABEL_RESAMPLING); the opt-in TRAIN.AUG_ZOOM and TRAIN.AUG_* steps only when `augment`."""
    return TrainTransform(
        crop_size=tuple(cfg.TRAIN.IMAGE_SIZE),
        base_size=cfg.TRAIN.BASE_SIZE,
        multi_scale=cfg.TRAIN.MULTI_SCALE,
        scale_factor=cfg.TRAIN.SCALE_FACTOR,
        flip=cfg.TRAIN.FLIP,
        brightness_shift=cfg.TRAIN.RANDOM_BRIGHTNESS_SHIFT_VALUE
        if cfg.TRAIN.RANDOM_BRIGHTNESS
        else 0,
        downsample_rate=cfg.TRAIN.DOWNSAMPLERATE,
        reduced_decode=cfg.DATASET.REDUCED_DECODE,
        label_resampling=cfg.DATASET.LABEL_RESAMPLING,
        wire_augment=wire_augment_from_cfg(cfg) if augment else None,
        aug_zoom=cfg.TRAIN.AUG_ZOOM if augment else 0.0,
        aug_zoom_max=cfg.TRAIN.AUG_ZOOM_MAX,
    )


def label_options(cfg: CfgNode, augment: bool = True) -> LabelOptions:
    """How labels are read (WIRE.LABEL_DILATE of the wire classes; TRAIN.LABEL_FILL when
    `augment`)."""
    return LabelOptions(
        label_dilate=cfg.WIRE.LABEL_DILATE,
        dilate_classes=tuple(wire_classes(cfg)),
        label_fill=cfg.TRAIN.LABEL_FILL if augment else 0,
    )

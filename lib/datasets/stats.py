"""Class statistics of label files and class weights computed from them.

Recipes (w_c before normalisation, f_c = pixel frequency of class c, ignore pixels excluded):
- ``sqrt``: 1 / sqrt(f_c)  (default: softer than inverse frequency for 2-5% wire pixels)
- ``inverse``: 1 / f_c
- ``median``: median(f) / f_c  (median-frequency balancing, Eigen & Fergus)
- ``enet``: 1 / ln(1.02 + f_c)  (ENet)
Weights are then scaled to mean 1, like the published Cityscapes weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lib.datasets.decode import decode_label

__all__ = ["pixel_counts", "class_weights", "METHODS"]

METHODS = ("sqrt", "inverse", "median", "enet")


def pixel_counts(label_paths: Iterable[Path], lut: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per class over label files, raw values mapped through `lut` (ignore -> outside range)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for path in label_paths:
        raw = decode_label(path)
        if raw.size and raw.max() >= len(lut):
            raise ValueError(f"{path}: label value {int(raw.max())} is not a known raw label value")
        ids = lut[raw]
        valid = (ids >= 0) & (ids < num_classes)
        counts += np.bincount(ids[valid].ravel(), minlength=num_classes)[:num_classes]
    return counts


def class_weights(counts: np.ndarray, method: str = "sqrt") -> np.ndarray:
    """Weights (mean 1) from per-class pixel counts; classes with no pixels get weight 0."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() <= 0:
        raise ValueError("no labelled pixels to compute class weights from")
    freq = counts / counts.sum()
    present = freq > 0
    weights = np.zeros_like(freq)
    if method == "sqrt":
        weights[present] = 1.0 / np.sqrt(freq[present])
    elif method == "inverse":
        weights[present] = 1.0 / freq[present]
    elif method == "median":
        weights[present] = np.median(freq[present]) / freq[present]
    elif method == "enet":
        weights[present] = 1.0 / np.log(1.02 + freq[present])
    else:
        raise ValueError(f"unknown class-weight method {method!r}; known: {', '.join(METHODS)}")
    return weights * (present.sum() / weights.sum())

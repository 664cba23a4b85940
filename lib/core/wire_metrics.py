"""Thin-structure metrics for wires: tolerant precision / recall / F1 and centerline Dice.

Tolerant P/R/F1 (the PLD-UAV benchmark's protocol): a predicted wire pixel is correct when a
labelled wire pixel lies within `d` pixels (Euclidean), and a labelled wire pixel is found
when a predicted one lies within `d`. `d` is given in pixels (>= 1) or as a fraction of the
image diagonal (< 1; the benchmark uses 0.0075, about 4.7 px on its 540x360 photos).

clDice (Shit et al., CVPR 2021) scores connectivity: the fraction of the predicted skeleton
inside the labelled mask (topology precision) and of the labelled skeleton inside the
predicted mask (topology sensitivity), combined as a harmonic mean. Skeletons are
Zhang-Suen thinning (opencv-python-headless has no cv2.ximgproc.thinning), run only on
foreground pixels so a sparse 5472x3078 wire mask costs little.

Counts are summed over images before the ratios are taken (dataset-level scores), like
`ConfusionMatrix`; `reduce_from_all_processes` sums them across ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from lib.config import wire_classes, wire_tolerance
from lib.utils.distributed import all_reduce_sum

__all__ = [
    "PLD_UAV_TOLERANCE",
    "tolerance_pixels",
    "distance_to",
    "skeletonize",
    "wire_counts",
    "scores_from_counts",
    "WireMetrics",
    "wire_metrics_from_cfg",
]

PLD_UAV_TOLERANCE = 0.0075  # fraction of the image diagonal
COUNT_NAMES = (
    "pred_hit",
    "pred",
    "label_hit",
    "label",
    "skel_pred_in_label",
    "skel_pred",
    "skel_label_in_pred",
    "skel_label",
)


def tolerance_pixels(tolerance: float, height: int, width: int) -> float:
    """Tolerance in pixels: `tolerance` itself when >= 1, else that fraction of the diagonal."""
    if tolerance < 0:
        raise ValueError(f"wire tolerance must be >= 0, got {tolerance}")
    return float(tolerance) if tolerance >= 1 else float(tolerance) * math.hypot(height, width)


def distance_to(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32 Euclidean distance of every pixel to the nearest True pixel of `mask`."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _thinning_tables() -> tuple[np.ndarray, np.ndarray]:
    """Deletion look-up tables of the two Zhang-Suen sub-iterations, indexed by the 8-bit code
    of the neighbours P2..P9 (N, NE, E, SE, S, SW, W, NW; bit k = P(k+2))."""
    first = np.zeros(256, bool)
    second = np.zeros(256, bool)
    for code in range(256):
        p = [(code >> k) & 1 for k in range(8)]  # p[0] = P2 ... p[7] = P9
        b = sum(p)
        a = sum(p[k] == 0 and p[(k + 1) % 8] == 1 for k in range(8))
        if 2 <= b <= 6 and a == 1:
            p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
            first[code] = p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
            second[code] = p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
    return first, second


_TABLES = _thinning_tables()
_OFFSETS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))  # P2..P9


def skeletonize(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a binary (H, W) mask to a one-pixel-wide (H, W) bool skeleton."""
    mask = np.asarray(mask, dtype=bool)
    img = np.pad(mask, 1).astype(np.uint8)
    ys, xs = np.nonzero(img)
    while True:
        changed = False
        for table in _TABLES:
            if ys.size == 0:
                break
            code = np.zeros(ys.size, np.int32)
            for k, (dy, dx) in enumerate(_OFFSETS):
                code |= img[ys + dy, xs + dx].astype(np.int32) << k
            delete = table[code]
            if delete.any():
                img[ys[delete], xs[delete]] = 0
                ys, xs = ys[~delete], xs[~delete]
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def wire_counts(
    pred: np.ndarray, label: np.ndarray, tolerance_px: float, valid: np.ndarray | None = None
) -> np.ndarray:
    """The eight counts of `COUNT_NAMES` for one image: bool (H, W) `pred` and `label` masks.

    Pixels outside `valid` (the ignore label) count neither as predictions nor as labels.
    """
    pred = np.asarray(pred, bool)
    label = np.asarray(label, bool)
    if pred.shape != label.shape:
        raise ValueError(f"prediction is {pred.shape} but the label is {label.shape}")
    if valid is not None:
        pred, label = pred & valid, label & valid
    pred_hit = int((distance_to(label)[pred] <= tolerance_px).sum())
    label_hit = int((distance_to(pred)[label] <= tolerance_px).sum())
    skel_pred, skel_label = skeletonize(pred), skeletonize(label)
    return np.array(
        [
            pred_hit,
            pred.sum(),
            label_hit,
            label.sum(),
            (skel_pred & label).sum(),
            skel_pred.sum(),
            (skel_label & pred).sum(),
            skel_label.sum(),
        ],
        dtype=np.int64,
    )


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 1.0  # nothing to get wrong: perfect


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b else 0.0


def scores_from_counts(counts: Sequence[int]) -> dict[str, float]:
    """precision, recall, f1, cldice (and its topology precision / sensitivity) from counts."""
    c = dict(zip(COUNT_NAMES, (int(v) for v in counts)))
    precision, recall = _ratio(c["pred_hit"], c["pred"]), _ratio(c["label_hit"], c["label"])
    tprec = _ratio(c["skel_pred_in_label"], c["skel_pred"])
    tsens = _ratio(c["skel_label_in_pred"], c["skel_label"])
    return {
        "precision": precision,
        "recall": recall,
        "f1": _harmonic(precision, recall),
        "cldice": _harmonic(tprec, tsens),
        "topo_precision": tprec,
        "topo_sensitivity": tsens,
    }


class WireMetrics:
    """Accumulates wire counts over images; `compute()` gives dataset-level scores.

    wire_classes: class ids that make up the wire mask; tolerance: pixels (>= 1) or a
    fraction of each image's diagonal (< 1).
    """

    def __init__(
        self,
        wire_classes: Sequence[int] = (1,),
        tolerance: float = PLD_UAV_TOLERANCE,
        ignore_label: int = 255,
    ) -> None:
        self.wire_classes = tuple(int(c) for c in wire_classes)
        self.tolerance = float(tolerance)
        self.ignore_label = ignore_label
        self.counts = torch.zeros(len(COUNT_NAMES), dtype=torch.int64)

    def _mask(self, ids: np.ndarray) -> np.ndarray:
        return np.isin(ids, self.wire_classes)

    def update(self, pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor) -> dict:
        """Add one image: (H, W) predicted and labelled class ids; returns its own scores."""
        pred = pred.cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
        label = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        pred, label = pred.squeeze(), label.squeeze()
        d = tolerance_pixels(self.tolerance, *label.shape[-2:])
        counts = wire_counts(
            self._mask(pred), self._mask(label), d, valid=label != self.ignore_label
        )
        self.counts += torch.from_numpy(counts)
        return scores_from_counts(counts)

    def reduce_from_all_processes(self) -> None:
        """Sum the counts over ranks (no-op without a process group); the counts stay on the CPU
        whatever the backend (NCCL reduces a CUDA copy)."""
        all_reduce_sum(self.counts)

    def compute(self) -> dict[str, float]:
        """Dataset-level precision, recall, f1, cldice, topo_precision, topo_sensitivity."""
        return scores_from_counts(self.counts.tolist())

    def __str__(self) -> str:
        s = self.compute()
        return (
            f"wire P {s['precision']:.4f} R {s['recall']:.4f} F1 {s['f1']:.4f} "
            f"clDice {s['cldice']:.4f} (tolerance {self.tolerance:g})"
        )


def wire_metrics_from_cfg(cfg) -> WireMetrics | None:
    """`WireMetrics` for the wire classes (WIRE.CLASSES, or the dataset's) and WIRE.TOLERANCE_*;
    None when there is no wire class (Cityscapes)."""
    classes = wire_classes(cfg)
    if not classes:
        return None
    return WireMetrics(classes, wire_tolerance(cfg), cfg.TRAIN.IGNORE_LABEL)

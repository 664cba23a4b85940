"""Wire decisions at a probability threshold, and the threshold that maximises wire F1.

Wire is a rare class, so argmax (the official decision: wire when P(wire) > 0.5 for two
classes) is rarely the best operating point. Here:

- `wire_probability(scores)`: P(wire) from the exp-logits the inference code returns (summed
  over scales and flips, as officially; for one scale this is exactly the softmax);
- `decide(scores, threshold)`: class ids, a wire class where P(wire) >= threshold;
- `ThresholdSweep`: tolerant wire precision / recall counted for many thresholds at once and
  summed over images, so the best threshold is a dataset-level one (like ODS for edges);
- `<weights>.wire_threshold.json` beside the weights: written by tools/pick_threshold.py, read
  by tools/test.py and tools/predict.py when WIRE.THRESHOLD is auto.

WIRE.THRESHOLD: auto = the picked file when there is one, else argmax; argmax = argmax always;
a number in (0, 1) = that threshold (lib.config.wire_threshold reads and checks it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lib.config import wire_classes, wire_threshold
from lib.core.wire_metrics import distance_to, scores_from_counts, tolerance_pixels
from lib.models.ensemble import ensemble_key, model_files
from lib.utils.atomic import write_text_atomic

__all__ = [
    "DEFAULT_THRESHOLDS",
    "wire_probability",
    "decide",
    "ThresholdSweep",
    "sweep_scores",
    "held_out_thresholds",
    "threshold_file",
    "write_threshold",
    "resolve_threshold",
    "probability_png",
]

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.02, 0.99, 0.02))


def wire_probability(scores: torch.Tensor, wire_classes: Sequence[int] = (1,)) -> torch.Tensor:
    """(C, H, W) non-negative class scores (exp-logits) -> (H, W) float32 P(any wire class)."""
    scores = scores.float()
    total = scores.sum(0).clamp_min(torch.finfo(torch.float32).tiny)
    return scores[list(wire_classes)].sum(0) / total


def decide(
    scores: torch.Tensor, threshold: float = 0.0, wire_classes: Sequence[int] = (1,)
) -> torch.Tensor:
    """(C, H, W) scores -> (H, W) int64 class ids.

    threshold <= 0: argmax (the official decision). Otherwise pixels with P(wire) >= threshold
    take the most likely wire class and the others the most likely non-wire class.
    """
    if threshold <= 0:
        return scores.argmax(0)
    wire = list(wire_classes)
    others = [c for c in range(scores.shape[0]) if c not in wire]
    is_wire = wire_probability(scores, wire) >= threshold
    best_wire = torch.as_tensor(wire, device=scores.device)[scores[wire].argmax(0)]
    if not others:
        return best_wire
    best_other = torch.as_tensor(others, device=scores.device)[scores[others].argmax(0)]
    return torch.where(is_wire, best_wire, best_other)


def probability_png(prob: torch.Tensor | np.ndarray) -> np.ndarray:
    """(H, W) probabilities in [0, 1] -> uint8 0..255 (what the probs/ PNGs hold)."""
    prob = prob.detach().cpu().numpy() if isinstance(prob, torch.Tensor) else np.asarray(prob)
    return np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8)


class ThresholdSweep:
    """Tolerant wire P/R counts for every threshold, summed over images (dataset level).

    update(prob, label): prob (H, W) P(wire); label (H, W) class ids with `ignore_label`.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        wire_classes: Sequence[int] = (1,),
        tolerance: float = 0.0075,
        ignore_label: int = 255,
    ) -> None:
        self.thresholds = [float(t) for t in thresholds]
        if not self.thresholds or not all(0 < t < 1 for t in self.thresholds):
            raise ValueError("thresholds must lie strictly between 0 and 1")
        self.wire_classes = tuple(int(c) for c in wire_classes)
        self.tolerance = float(tolerance)
        self.ignore_label = ignore_label
        # per threshold: pred_hit, pred, label_hit, label (the first four wire counts)
        self.counts = np.zeros((len(self.thresholds), 4), np.int64)
        self.images = 0

    def update(self, prob: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray) -> None:
        prob = prob.detach().cpu().numpy() if isinstance(prob, torch.Tensor) else np.asarray(prob)
        label = label.cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        prob, label = prob.squeeze(), label.squeeze()
        if prob.shape != label.shape:
            raise ValueError(f"probability map is {prob.shape} but the label is {label.shape}")
        valid = label != self.ignore_label
        wire = np.isin(label, self.wire_classes) & valid
        d = tolerance_pixels(self.tolerance, *label.shape)
        near_label = distance_to(wire) <= d
        for k, t in enumerate(self.thresholds):
            pred = (prob >= t) & valid
            self.counts[k] += (
                int(near_label[pred].sum()),
                int(pred.sum()),
                int((distance_to(pred)[wire] <= d).sum()),
                int(wire.sum()),
            )
        self.images += 1

    def scores(self) -> list[dict]:
        """One dict per threshold: threshold, precision, recall, f1."""
        return sweep_scores(self.counts, self.thresholds)

    def best(self) -> dict:
        """The row with the highest F1 (the lowest threshold among equals)."""
        return _best(self.scores())


def sweep_scores(counts, thresholds: Sequence[float]) -> list[dict]:
    """(T, 4) sweep counts (pred_hit, pred, label_hit, label per threshold) -> a row each."""
    rows = []
    for t, c in zip(thresholds, np.asarray(counts, np.int64)):
        s = scores_from_counts([*c.tolist(), 0, 0, 0, 0])
        rows.append({"threshold": float(t), **{k: s[k] for k in ("precision", "recall", "f1")}})
    return rows


def _best(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: (r["f1"], -r["threshold"]))


def held_out_thresholds(fold_counts: dict, thresholds: Sequence[float]) -> dict:
    """Honest thresholds for k-fold cross-validation.

    fold_counts: fold -> (T, 4) sweep counts of that fold's held-out photos (its own model).
    For each fold, the threshold is picked on the *other* folds' summed counts (the way it
    would be picked without seeing the fold) and the fold is scored at it. Returns
    {"folds": {fold: row}, "pooled": the best row over all folds' counts}: the threshold to
    give a model trained on every photo with the same recipe. Needs at least two folds.
    """
    if len(fold_counts) < 2:
        raise ValueError("picking a threshold on the other folds needs at least two folds")
    counts = {k: np.asarray(c, np.int64) for k, c in fold_counts.items()}
    total = sum(counts.values())
    rows = {}
    for k, own in counts.items():
        t = _best(sweep_scores(total - own, thresholds))["threshold"]
        rows[k] = next(r for r in sweep_scores(own, thresholds) if r["threshold"] == t)
    return {"folds": rows, "pooled": _best(sweep_scores(total, thresholds))}


def threshold_file(model_file: str | Path) -> Path:
    """Where the picked threshold of a weights file lives: `<weights>.wire_threshold.json`.

    For an ensemble (`a.pth,b.pth`): `ensemble-<key>.wire_threshold.json` beside the first
    file, the key naming the set of files (so no member's own threshold is overwritten).
    """
    files = model_files(model_file)
    if len(files) > 1:
        return Path(files[0]).with_name(f"ensemble-{ensemble_key(files)}.wire_threshold.json")
    model_file = Path(model_file)
    return model_file.with_name(model_file.name + ".wire_threshold.json")


def write_threshold(model_file: str | Path, record: dict) -> Path:
    """Write `record` (with its "threshold") beside the weights, atomically; returns the path."""
    path = threshold_file(model_file)
    write_text_atomic(path, json.dumps(record, indent=2), what="the wire threshold")
    return path


def resolve_threshold(cfg, model_file: str | Path | None = None) -> tuple[float, str]:
    """(threshold, where it came from) for WIRE.THRESHOLD and the weights file.

    Returns 0.0 for argmax. A damaged threshold file is an error naming it. Without a wire
    class (Cityscapes) auto is argmax: a picked file belongs to a wire model.
    """
    value = wire_threshold(cfg)
    if value == "argmax":
        return 0.0, "WIRE.THRESHOLD argmax"
    if isinstance(value, float):
        return value, "WIRE.THRESHOLD"
    model_file = model_file or cfg.TEST.MODEL_FILE
    if model_file and wire_classes(cfg) and threshold_file(model_file).is_file():
        path = threshold_file(model_file)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            threshold = float(record["threshold"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a wire threshold file ({err})") from None
        if not 0 < threshold < 1:
            raise ValueError(f"{path}: threshold {threshold} is not in (0, 1)")
        return threshold, str(path)
    return 0.0, "argmax"

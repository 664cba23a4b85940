"""Losses: weighted cross-entropy and OHEM cross-entropy, summed over the model's outputs.

Both upsample each output bilinearly to the label size first and weight output k by
`LOSS.BALANCE_WEIGHTS[k]` (for OCR: `[aux, main]`).

OHEM applies to the main (last) output only; the other outputs get plain cross-entropy. How
that aux term is averaged is `LOSS.OHEM_AUX_MEAN`:
- "official" (default): what the official training actually optimises. Its aux loss is a
  per-pixel map (reduction 'none') that the loop averages with `.mean()`, i.e. the mean over
  ALL pixels of the class-weighted per-pixel loss, ignored pixels counting as 0. Published
  OHEM results were trained this way.
- "weighted": the ordinary weighted mean over labelled pixels (what `CrossEntropyLoss` with
  `reduction='mean'` computes), so the aux term means the same with and without OHEM.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lib.config import wire_classes


def _resize_to(score: torch.Tensor, target: torch.Tensor, align_corners: bool) -> torch.Tensor:
    if score.shape[-2:] != target.shape[-2:]:
        if score.dim() == 4 and score.shape[1] <= 4 and not score.is_contiguous():
            # a few classes in channels_last (MODEL.CHANNELS_LAST): the NCHW kernels are faster
            # here (2 classes: 1.5x, forward and backward) and give the same values
            score = score.contiguous()
        score = F.interpolate(score, size=target.shape[-2:], mode="bilinear",
                              align_corners=align_corners)
    return score


def _as_list(outputs) -> list[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


class SegmentationLoss(nn.Module):
    """Sum over outputs of `balance_weights[k] * loss_k(upsample(output_k), target)`.

    outputs: a tensor (N, C, h, w) or a list of them; target: (N, H, W) int64 -> scalar.
    """

    def __init__(self, ignore_label: int, balance_weights: Sequence[float],
                 class_weights: torch.Tensor | None = None, align_corners: bool = True):
        super().__init__()
        self.ignore_label = ignore_label
        self.balance_weights = [float(w) for w in balance_weights]
        self.align_corners = align_corners
        # A buffer so that .to(device) moves it and it is saved (as `loss.criterion.weight`, the official name) by lib.utils.checkpoint.
        self.register_buffer("weight", None if class_weights is None else
                             torch.as_tensor(class_weights, dtype=torch.float32))

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        scores = _as_list(outputs)
        if len(scores) != len(self.balance_weights):
            raise ValueError(f"LOSS.BALANCE_WEIGHTS has {len(self.balance_weights)} entries but the "
                             f"model returned {len(scores)} outputs")
        last = len(scores) - 1
        return sum(w * self.term(_resize_to(s.float(), target, self.align_corners), target, k == last)
                   for k, (w, s) in enumerate(zip(self.balance_weights, scores)))

    def pixel_losses(self, score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Class-weighted per-pixel cross-entropy (N, H, W); 0 at ignored pixels."""
        return F.cross_entropy(score, target, weight=self.weight, ignore_index=self.ignore_label,
                               reduction="none")

    def term(self, score: torch.Tensor, target: torch.Tensor, is_main: bool) -> torch.Tensor:
        raise NotImplementedError


class CrossEntropy(SegmentationLoss):
    """Weighted cross-entropy with an ignore label, averaged over labelled pixels."""

    def term(self, score, target, is_main):
        return F.cross_entropy(score, target, weight=self.weight, ignore_index=self.ignore_label)


class OhemCrossEntropy(SegmentationLoss):
    """Online hard example mining on the main output; see the module docstring for the aux term."""

    def __init__(self, ignore_label: int, balance_weights: Sequence[float],
                 class_weights: torch.Tensor | None = None, align_corners: bool = True,
                 thresh: float = 0.7, min_kept: int = 100000, aux_mean: str = "official"):
        super().__init__(ignore_label, balance_weights, class_weights, align_corners)
        if aux_mean not in ("official", "weighted"):
            raise ValueError(f"LOSS.OHEM_AUX_MEAN is {aux_mean!r}; known: official, weighted")
        self.thresh = thresh
        self.min_kept = max(1, min_kept)
        self.aux_mean = aux_mean

    def term(self, score, target, is_main):
        if not is_main:
            if self.aux_mean == "official":
                return self.pixel_losses(score, target).mean()
            return F.cross_entropy(score, target, weight=self.weight, ignore_index=self.ignore_label)
        return self.ohem(score, target)

    def ohem(self, score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss of the pixels whose true-class probability is below the threshold.

        threshold = max(prob at sorted index min(min_kept, n - 1), thresh), n labelled pixels:
        the official selection, computed without reading anything back to the host (no
        `.item()`, no boolean indexing), so a GPU step does not wait for it. Unlabelled pixels
        sort last (probability 2) and count nowhere; with none labelled the loss is a zero that
        still carries the graph.
        """
        valid = target != self.ignore_label
        losses = self.pixel_losses(score, target)
        safe_target = torch.where(valid, target, torch.zeros_like(target))
        prob = F.softmax(score, dim=1).gather(1, safe_target.unsqueeze(1)).squeeze(1)
        prob = torch.where(valid, prob, torch.full_like(prob, 2.0)).flatten()
        sorted_prob = prob.sort().values
        count = valid.sum()
        index = torch.clamp(count - 1, min=0, max=self.min_kept).reshape(1)
        threshold = torch.clamp(sorted_prob.gather(0, index), min=self.thresh)
        hard = (prob < threshold) & valid.flatten()
        kept = hard.sum()
        return (losses.flatten() * hard).sum() / torch.clamp(kept, min=1)


def soft_skeleton(mask: torch.Tensor, iters: int = 3) -> torch.Tensor:
    """Soft morphological skeleton of a (N, 1, H, W) mask in [0, 1] (3x3 min/max pooling).

    Each round erodes the mask and keeps what an opening would remove, so lines up to about
    2 * iters + 1 pixels wide reduce to their centre line.
    """

    def erode(x):
        return -F.max_pool2d(-x, 3, 1, 1)

    def dilate(x):
        return F.max_pool2d(x, 3, 1, 1)

    skeleton = F.relu(mask - dilate(erode(mask)))
    for _ in range(iters):
        mask = erode(mask)
        delta = F.relu(mask - dilate(erode(mask)))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


class _WireTerm(nn.Module):
    """A term on the main output's wire probability added to a base loss (itself possibly a
    `_WireTerm`); the class weights, ignore label and alignment are the base loss's."""

    def __init__(self, base: nn.Module, weight: float, wire_classes: Sequence[int] = (1,)):
        super().__init__()
        self.base = base
        self.term_weight = float(weight)
        self.wire_classes = list(wire_classes)

    @property
    def weight(self):  # the class weights (saved as loss.criterion.weight)
        return self.base.weight

    @property
    def ignore_label(self) -> int:
        return self.base.ignore_label

    @property
    def align_corners(self) -> bool:
        return self.base.align_corners

    def wire_probability(self, outputs, target: torch.Tensor):
        """(wire probability (N, H, W) of the main output at the label size, labelled wire
        (N, H, W) bool, labelled pixels (N, H, W) bool)."""
        main = _resize_to(_as_list(outputs)[-1].float(), target, self.align_corners)
        valid = target != self.ignore_label
        wire = torch.zeros_like(target, dtype=torch.bool)
        for c in self.wire_classes:
            wire |= target == c
        prob = F.softmax(main, dim=1)[:, self.wire_classes].sum(1)
        return prob, wire & valid, valid


class SkeletonRecall(_WireTerm):
    """`loss + weight * (1 - recall of the labelled wires' skeleton)`, recall measured with the
    predicted wire probability, on the main output only.

    A thin wire has few pixels, so cross-entropy barely notices a missed stretch; on the
    skeleton every stretch weighs the same, whatever its width.
    """

    def __init__(self, base: nn.Module, weight: float, wire_classes: Sequence[int] = (1,),
                 iters: int = 3):
        super().__init__(base, weight, wire_classes)
        self.iters = iters

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        loss = self.base(outputs, target)
        prob, wire, _ = self.wire_probability(outputs, target)
        with torch.no_grad():
            skeleton = soft_skeleton(wire.float().unsqueeze(1), self.iters).squeeze(1)
        found = (prob * skeleton).sum() / skeleton.sum().clamp_min(1.0)
        has_wire = (skeleton.sum() > 0).float()  # no wire in the batch: no term
        return loss + self.term_weight * has_wire * (1.0 - found)


class SoftDice(_WireTerm):
    """`loss + weight * (1 - soft Dice of the wire class)` over the batch's labelled pixels.

    Soft Dice is the F1 score with the wire probability in place of the decision: 2 * sum(p*y)
    / (sum(p) + sum(y)). Cross-entropy averages over pixels, so a rare class weighs by its
    pixel count; this term weighs missed wire pixels and false wire pixels alike, whatever
    the share of wire in the photo, as the F1 the product is scored by does.
    """

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        loss = self.base(outputs, target)
        prob, wire, valid = self.wire_probability(outputs, target)
        prob = prob * valid
        wire = wire.float()
        inter = (prob * wire).sum()
        denom = prob.sum() + wire.sum()
        dice = (2.0 * inter + 1.0) / (denom + 1.0)
        return loss + self.term_weight * (1.0 - dice)


def build_criterion(cfg, class_weights: torch.Tensor | None = None) -> nn.Module:
    """The loss `cfg.LOSS` asks for; `class_weights` usually come from the training dataset."""
    common = dict(ignore_label=cfg.TRAIN.IGNORE_LABEL, balance_weights=cfg.LOSS.BALANCE_WEIGHTS,
                  class_weights=class_weights, align_corners=cfg.MODEL.ALIGN_CORNERS)
    if len(cfg.LOSS.BALANCE_WEIGHTS) != cfg.MODEL.NUM_OUTPUTS:
        raise ValueError(f"LOSS.BALANCE_WEIGHTS {list(cfg.LOSS.BALANCE_WEIGHTS)} needs one weight "
                         f"per model output (MODEL.NUM_OUTPUTS = {cfg.MODEL.NUM_OUTPUTS})")
    if cfg.LOSS.USE_OHEM:
        loss = OhemCrossEntropy(**common, thresh=cfg.LOSS.OHEMTHRES, min_kept=cfg.LOSS.OHEMKEEP,
                                aux_mean=cfg.LOSS.OHEM_AUX_MEAN)
    else:
        loss = CrossEntropy(**common)
    if cfg.LOSS.SKELETON_RECALL > 0:
        loss = SkeletonRecall(
            loss, cfg.LOSS.SKELETON_RECALL, wire_classes(cfg), cfg.LOSS.SKELETON_ITERS
        )
    if cfg.LOSS.DICE > 0:
        loss = SoftDice(loss, cfg.LOSS.DICE, wire_classes(cfg))
    return loss

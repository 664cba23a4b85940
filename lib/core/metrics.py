"""Confusion-matrix segmentation metrics (mIoU, per-class IoU, pixel and mean accuracy).

The shape follows torchvision's `references/segmentation/utils.ConfusionMatrix`; the numbers
follow the official HRNet code: IoU = tp / max(1, gt + pred - tp) for every class, and mIoU
is the mean over *all* classes (a class absent from both labels and predictions counts 0),
so results are comparable with the official logs.
"""

from __future__ import annotations

import torch

from lib.utils.distributed import all_reduce_sum


class ConfusionMatrix:
    """Accumulates a (num_classes, num_classes) int64 matrix: rows = label, columns = prediction."""

    def __init__(
        self, num_classes: int, ignore_label: int = 255, device: torch.device | str = "cpu"
    ):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.mat = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)

    def update(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        """Add a batch: `target` and `pred` are integer tensors of the same shape, e.g. (N, H, W).

        Pixels whose label is `ignore_label` (or outside [0, num_classes)) are not counted.
        """
        if target.shape != pred.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} != prediction shape {tuple(pred.shape)}"
            )
        target = target.to(self.mat.device).flatten().long()
        pred = pred.to(self.mat.device).flatten().long()
        keep = (target != self.ignore_label) & (target >= 0) & (target < self.num_classes)
        index = target[keep] * self.num_classes + pred[keep]
        self.mat += torch.bincount(index, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def update_from_logits(self, target: torch.Tensor, logits: torch.Tensor) -> None:
        """Add a batch of logits (N, C, H, W) against labels (N, H, W) via argmax over C."""
        self.update(target, logits.argmax(dim=1))

    def reset(self) -> None:
        self.mat.zero_()

    def reduce_from_all_processes(self) -> None:
        """Sum the matrices of all ranks in place (no-op without a process group).

        The matrix may be on the CPU or a GPU, whatever the backend (see lib.utils.distributed).
        """
        all_reduce_sum(self.mat)

    def compute(self) -> dict:
        """Metrics as Python floats/lists: miou, iou (per class), pixel_acc, mean_acc."""
        mat = self.mat.double().cpu()
        tp = mat.diag()
        gt = mat.sum(1)
        pred = mat.sum(0)
        iou = tp / torch.clamp(gt + pred - tp, min=1.0)
        acc = tp / torch.clamp(gt, min=1.0)
        return {
            "miou": iou.mean().item(),
            "iou": iou.tolist(),
            "pixel_acc": (tp.sum() / max(gt.sum().item(), 1.0)).item(),
            "mean_acc": acc.mean().item(),
        }

    def __str__(self) -> str:
        m = self.compute()
        per_class = ", ".join(f"{v:.4f}" for v in m["iou"])
        return (
            f"mIoU {m['miou']:.4f}  pixel acc {m['pixel_acc']:.4f}  "
            f"mean acc {m['mean_acc']:.4f}  IoU [{per_class}]"
        )

"""The loops: `train_one_epoch`, `validate` (single scale, whole images), `testval` / `test`
(official multi-scale + flip inference, metrics and/or prediction PNGs).

Every step of a training iteration is in `train_one_epoch`: data to device, lr, forward and
loss (under autocast when TRAIN.AMP is set), a NaN check, backward, step, log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lib.core.inference import multi_scale_inference
from lib.core.metrics import ConfusionMatrix
from lib.core.thresholds import ThresholdSweep, decide, probability_png, wire_probability
from lib.core.wire_metrics import WireMetrics
from lib.utils.amp import autocast, autocast_dtype
from lib.utils.distributed import (
    all_gather_tensor,
    all_reduce,
    all_reduce_sum,
    get_world_size,
    is_main_process,
    unwrap,
)
from lib.utils.lr import set_poly_lr

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops before anything else is saved."""


def frozen_parameters(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Parameter]:
    """Parameters whose (unwrapped) name starts with one of `prefixes` (TRAIN.FREEZE_LAYERS)."""
    if not prefixes:
        return []
    return [p for k, p in unwrap(model).named_parameters() if k.startswith(tuple(prefixes))]


def _freeze_batchnorm(model: nn.Module, prefixes: Sequence[str]) -> None:
    # frozen layers also keep their BatchNorm statistics
    for name, module in unwrap(model).named_modules():
        if (
            prefixes
            and name.startswith(tuple(prefixes))
            and isinstance(module, nn.modules.batchnorm._BatchNorm)
        ):
            module.eval()


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader,
    *,
    epoch: int,
    base_lr: float,
    first_iter: int,
    max_iters: int,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    amp: str = "",
    channels_last: bool = False,
    freeze: Sequence[str] = (),
    writer=None,
    print_freq: int = 20,
) -> dict:
    """One pass over `loader`; iteration i uses lr = poly(base_lr, first_iter + i, max_iters).

    Returns {"loss": mean loss over ranks and iterations, "lr": last lr, "seconds": wall time}.
    Raises NonFiniteLossError naming the epoch and iteration when any rank's loss is NaN/inf.
    """
    model.train()
    amp_dtype = autocast_dtype(amp, device, "TRAIN.AMP")
    _freeze_batchnorm(model, freeze)
    frozen = frozen_parameters(model, freeze)
    world = get_world_size()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    every = max(print_freq, 1)
    n = len(loader)
    # No host sync between checks: the losses, their count and the first non-finite iteration
    # accumulate on the device, and are read (one all_reduce) every `print_freq` iterations
    # and at the end of the epoch, so the CPU keeps queueing GPU work.
    since = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, bad steps)
    first_bad = torch.tensor([n, 0.0], dtype=torch.float64, device=device)  # (iteration, loss)
    total, lr, start = 0.0, base_lr, time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}",
        disable=not is_main_process(),
        dynamic_ncols=True,
        leave=False,
    )
    for i, (images, labels, _, _) in enumerate(bar):
        it = first_iter + i
        lr = set_poly_lr(optimizer, base_lr, it, max_iters)
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True).long()

        with autocast(device, amp_dtype):
            outputs = model(images)
            loss = criterion(outputs, labels)

        value = loss.detach().double()
        bad = ~torch.isfinite(value)
        since += torch.stack([value, bad.double()])
        first_bad = torch.where(bad & (first_bad[0] == n), torch.stack([torch.full_like(value, i), value]), first_bad)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        for p in frozen:
            p.grad = None
        scaler.step(optimizer)
        scaler.update()

        if it % every == 0 or i == n - 1:  # the check: one sync and one all_reduce
            current = value.float().reshape(1).to(since.dtype)
            stats = all_reduce_sum(torch.cat([current, since]))  # same calls on every rank
            step_loss, loss_sum, bad_steps = (float(v) for v in stats.tolist())
            since.zero_()
            if bad_steps:
                _raise_non_finite(first_bad, epoch, first_iter, lr)
            step_loss /= world
            total += loss_sum / world
            bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
            if writer is not None and it % every == 0:
                writer.add_scalar("train_loss", step_loss, it)
                writer.add_scalar("lr", lr, it)
    bar.close()
    return {"loss": total / max(n, 1), "lr": lr, "seconds": time.perf_counter() - start}


def _raise_non_finite(first_bad: torch.Tensor, epoch: int, first_iter: int, lr: float) -> None:
    """Every rank raises the same error naming the first iteration where any rank's loss was
    NaN / inf (found at the next check, so steps up to then have run; nothing is saved)."""
    i, value = min(tuple(t.tolist()) for t in all_gather_tensor(first_bad))
    raise NonFiniteLossError(
        f"loss is {value} at epoch {epoch} iteration {int(i)} "
        f"(global iteration {first_iter + i}, lr {lr:.3g}); training stopped, saved files untouched"
    )


def _palette_image(pred: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return colours[pred.astype(np.uint8)]


@torch.no_grad()
def validate(
    model: nn.Module,
    criterion: nn.Module,
    loader,
    *,
    num_classes: int,
    ignore_label: int,
    device: torch.device,
    align_corners: bool = True,
    amp: str = "",
    channels_last: bool = False,
    writer=None,
    epoch: int = 0,
    palette: Sequence[Sequence[int]] | None = None,
    num_images: int = 3,
    wire_metrics: WireMetrics | None = None,
) -> dict:
    """Single-scale validation on whole images, as the official `validate`.

    Under torch.distributed each rank runs its shard (use an unpadded sampler such as
    ShardSampler) and the confusion matrices and loss sums are added across ranks, so any number
    of processes reports the same numbers. Returns the main (last) output's metrics
    (miou, iou, pixel_acc, mean_acc), `loss`, and `miou_per_output` for every model output.
    """
    net = unwrap(model)  # no DDP in eval: ranks may run different numbers of batches
    net.eval()
    amp_dtype = autocast_dtype(amp, device, "TEST.AMP")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    matrices: list[ConfusionMatrix] = []
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of loss * n, n)
    for b, (images, labels, _, _) in enumerate(
        tqdm(
            loader, desc="validate", disable=not is_main_process(), dynamic_ncols=True, leave=False
        )
    ):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True).long()
        with autocast(device, amp_dtype):
            outputs = net(images)
        outputs = [
            o.float() for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])
        ]
        loss_sum += torch.stack(
            [
                criterion(outputs, labels).double() * len(images),
                torch.tensor(len(images), dtype=torch.float64, device=device),
            ]
        )
        if not matrices:
            matrices = [ConfusionMatrix(num_classes, ignore_label, device) for _ in outputs]
        for cm, out in zip(matrices, outputs):
            out = F.interpolate(
                out, size=labels.shape[-2:], mode="bilinear", align_corners=align_corners
            )
            cm.update_from_logits(labels, out)
        if wire_metrics is not None:  # `out` is now the main output at label size
            for pred, label in zip(out.argmax(1), labels):
                wire_metrics.update(pred, label)
        if writer is not None and b == 0 and palette is not None:
            preds = outputs[-1].argmax(1).cpu().numpy()
            for k in range(min(num_images, len(preds))):
                writer.add_image(
                    f"valid_pred/{k}", _palette_image(preds[k], palette), epoch, dataformats="HWC"
                )
    # Every rank makes the same collective calls: a rank whose shard was empty (fewer samples
    # than processes) learns the number of model outputs from the others.
    outputs_count = all_reduce(torch.tensor([len(matrices)], device=device), "max")
    matrices += [
        ConfusionMatrix(num_classes, ignore_label, device)
        for _ in range(max(int(outputs_count.item()), 1) - len(matrices))
    ]
    for cm in matrices:
        cm.reduce_from_all_processes()
    all_reduce_sum(loss_sum)
    result = matrices[-1].compute()
    result["loss"] = (loss_sum[0] / loss_sum[1].clamp(min=1)).item()
    result["miou_per_output"] = [cm.compute()["miou"] for cm in matrices]
    result["confusion_matrix"] = matrices[-1].mat.cpu().tolist()
    if wire_metrics is not None:  # (ours) tolerant wire P/R/F1 and clDice
        wire_metrics.reduce_from_all_processes()
        result["wire"] = wire_metrics.compute()
    if writer is not None:
        for key, value in result.get("wire", {}).items():
            writer.add_scalar(f"valid_wire/{key}", value, epoch)
        writer.add_scalar("valid_loss", result["loss"], epoch)
        writer.add_scalar("valid_mIoU", result["miou"], epoch)
        for c, iou in enumerate(result["iou"]):
            writer.add_scalar(f"valid_IoU/class_{c}", iou, epoch)
    return result


def _save_prediction(pred: np.ndarray, name: str, save_dir: Path, palette, id_values) -> None:
    from lib.datasets.palette import save_id_png, save_palette_png

    save_palette_png(pred, save_dir / f"{name}.png", palette)
    if id_values is not None:
        save_id_png(pred, save_dir / "ids" / f"{name}.png", id_values)


def _save_probability(prob: torch.Tensor, name: str, save_dir: Path) -> None:
    from lib.datasets.palette import save_id_png  # as _save_prediction: datasets load lazily

    save_id_png(probability_png(prob), save_dir / "probs" / f"{name}.png", None)


@torch.no_grad()
def testval(
    model: nn.Module,
    loader,
    *,
    num_classes: int,
    ignore_label: int,
    scales: Sequence[float],
    flip: bool,
    base_size: int,
    crop_size: Sequence[int],
    align_corners: bool = True,
    output_index: int = -1,
    window_batch: int = 4,
    amp: str = "",
    channels_last: bool = False,
    save_dir: str | Path | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    id_values: Sequence[int] | None = None,
    wire_metrics: WireMetrics | None = None,
    wire_threshold: float = 0.0,
    wire_classes: Sequence[int] = (1,),
    save_prob: bool = False,
    sweep: ThresholdSweep | None = None,
) -> dict | None:
    """Official multi-scale (+flip) inference over `loader` (batch size 1).

    With labels (the dataset's `has_labels`), returns the metrics summed over all ranks;
    without, returns None. With `save_dir`, writes `<name>.png` palette predictions and, when
    `id_values` is given, `ids/<name>.png` raw-id PNGs (power lines: 0/255). `channels_last`
    (MODEL.CHANNELS_LAST) gives the network channels_last inputs, as training and validation do.

    Decisions: argmax (official) unless `wire_threshold` > 0, where P(wire classes) >= threshold
    makes a wire pixel (lib/core/thresholds.py). `save_prob` adds `probs/<name>.png`, P(wire) in
    8 bits. `sweep` (a ThresholdSweep) collects wire P/R for many thresholds at once.
    """
    net = unwrap(model).eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    device = next(net.parameters()).device
    has_labels = getattr(loader.dataset, "has_labels", True)
    cm = ConfusionMatrix(num_classes, ignore_label, device) if has_labels else None
    save_dir = Path(save_dir) if save_dir is not None else None
    for images, labels, _, names in tqdm(
        loader, desc="test", disable=not is_main_process(), dynamic_ncols=True
    ):
        for k in range(len(images)):
            pred = multi_scale_inference(
                net,
                images[k : k + 1],
                num_classes=num_classes,
                scales=scales,
                flip=flip,
                base_size=base_size,
                crop_size=crop_size,
                align_corners=align_corners,
                output_index=output_index,
                window_batch=window_batch,
                amp=amp,
                memory_format=memory_format,
            )
            if cm is not None:
                label = labels[k : k + 1].to(device).long()
                if pred.shape[-2:] != label.shape[-2:]:
                    pred = F.interpolate(
                        pred, label.shape[-2:], mode="bilinear", align_corners=align_corners
                    )
            ids = decide(pred[0], wire_threshold, wire_classes)  # argmax when threshold <= 0
            want_prob = (sweep is not None and cm is not None) or (save_dir is not None and save_prob)
            prob = wire_probability(pred[0], wire_classes) if want_prob else None
            if cm is not None:
                cm.update(label, ids[None])
                if wire_metrics is not None:
                    wire_metrics.update(ids, label[0])
                if sweep is not None:
                    sweep.update(prob, label[0])
            if save_dir is not None:
                _save_prediction(ids.cpu().numpy(), names[k], save_dir, palette, id_values)
                if save_prob:
                    _save_probability(prob, names[k], save_dir)
    if cm is None:
        return None
    cm.reduce_from_all_processes()
    if sweep is not None:
        counts = torch.from_numpy(sweep.counts)
        all_reduce_sum(counts)
        sweep.counts = counts.numpy()
    result = cm.compute()
    result["confusion_matrix"] = cm.mat.cpu().tolist()
    if wire_metrics is not None:  # (ours) tolerant wire P/R/F1 and clDice
        wire_metrics.reduce_from_all_processes()
        result["wire"] = wire_metrics.compute()
    return result


def test(model: nn.Module, loader, **kwargs) -> None:
    """Predictions only (a list without labels): `testval` with no metrics."""
    testval(model, loader, **kwargs)


def metrics_table(metrics: dict, class_names: Sequence[str] | None = None) -> str:
    """A plain-text table: one row per class (IoU), then mIoU, pixel and mean accuracy."""
    names = list(class_names) if class_names else [str(c) for c in range(len(metrics["iou"]))]
    width = max(10, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  IoU", "-" * (width + 9)]
    lines += [f"{n:<{width}}  {v:.4f}" for n, v in zip(names, metrics["iou"])]
    lines += ["-" * (width + 9)]
    for key, label in (("miou", "mIoU"), ("pixel_acc", "pixel acc"), ("mean_acc", "mean acc")):
        lines.append(f"{label:<{width}}  {metrics[key]:.4f}")
    for key, value in metrics.get("wire", {}).items():  # tolerance-based wire scores
        lines.append(f"{'wire ' + key:<{width}}  {value:.4f}")
    return "\n".join(lines)

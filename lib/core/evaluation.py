"""Evaluation: `evaluate` (tools/test.py's work: weights + DATASET.TEST_SET -> metrics json
and/or prediction PNGs), `testval` (the official multi-scale + flip loop over a loader), and
`metrics_table`.

Loads TEST.MODEL_FILE (default: OUTPUT_DIR/<dataset>/<cfg name>/final_state.pth; our files and
the official ones alike), runs the official multi-scale (TEST.SCALE_LIST) + flip
(TEST.FLIP_TEST) inference with TEST.IMAGE_SIZE windows, and writes palette PNGs (plus 0/255 id
PNGs for power lines) under the output folder. Runs on CPU, one GPU, or under torchrun.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.config import ExperimentPaths, wire_classes
from lib.core.backends import inference_model, is_exported
from lib.core.inference import multi_scale_inference
from lib.core.metrics import ConfusionMatrix
from lib.core.thresholds import (
    ThresholdSweep,
    decide,
    probability_png,
    resolve_threshold,
    wire_probability,
)
from lib.core.wire_metrics import WireMetrics, wire_metrics_from_cfg
from lib.datasets import DATASETS, build_dataset
from lib.datasets.base import zoom_view
from lib.datasets.palette import palette_for, save_id_png, save_palette_png
from lib.models.summary import model_summary
from lib.utils.atomic import write_text_atomic
from lib.utils.distributed import (
    ShardSampler,
    all_reduce_sum,
    init_distributed,
    is_main_process,
    unwrap,
)
from lib.utils.logs import setup_logging
from lib.utils.runtime import configure_backends, device_of, limit, limit_worker_threads

logger = logging.getLogger(__name__)


def evaluate(
    cfg, name: str, local_rank: int = -1, save: bool = True, sweep=None
) -> dict | None:
    """Run tools/test.py's work; returns the metrics (labelled list) or None (predictions only).

    `sweep` (a lib.core.thresholds.ThresholdSweep) also collects wire P/R per threshold.
    """
    info = init_distributed(local_rank)
    configure_backends(cfg)
    paths = ExperimentPaths.of(cfg, name)
    setup_logging(info.rank, paths.log_file("test") if info.is_main else None)
    logger.info("%s", info.describe())

    model_file = Path(cfg.TEST.MODEL_FILE) if cfg.TEST.MODEL_FILE else paths.final
    threshold, source = resolve_threshold(cfg, model_file)
    wire = wire_metrics_from_cfg(cfg)
    if threshold > 0:
        logger.info("wire where P(wire) >= %.4g (%s)", threshold, source)
    # PyTorch weights (eval, TEST.FOLD_BN, CHANNELS_LAST) or an exported .onnx / .xml model
    # exported models run on the CPU whatever the machine has
    model = inference_model(cfg, model_file, "cpu" if is_exported(model_file) else info.device)
    if info.is_main and not is_exported(model_file):
        crop_w, crop_h = cfg.TEST.IMAGE_SIZE
        logger.info("model: %s", model_summary(model, crop_h, crop_w))

    dataset = limit(build_dataset(cfg, "test"), cfg.TEST.NUM_SAMPLES)
    loader = DataLoader(
        dataset,
        batch_size=1,
        sampler=ShardSampler(len(dataset), info.rank, info.world_size),
        num_workers=cfg.WORKERS,
        pin_memory=cfg.PIN_MEMORY and info.device.type == "cuda",
        worker_init_fn=limit_worker_threads,
    )
    has_labels = getattr(dataset, "has_labels", True)
    save_dir = paths.results(has_labels) if save else None
    crop_w, crop_h = cfg.TEST.IMAGE_SIZE
    base_size = cfg.TEST.BASE_SIZE
    if cfg.TEST.ZOOM < 1:  # a photo from further away is predicted at its own, smaller size
        shrink = cfg.TEST.ZOOM
        base_size = max(1, round(base_size * shrink))
        crop_w, crop_h = max(1, round(crop_w * shrink)), max(1, round(crop_h * shrink))
    if cfg.TEST.ZOOM != 1:
        logger.info("photos zoomed %gx (TEST.ZOOM)", cfg.TEST.ZOOM)
    metrics = testval(
        model,
        loader,
        num_classes=cfg.DATASET.NUM_CLASSES,
        ignore_label=cfg.TRAIN.IGNORE_LABEL,
        scales=list(cfg.TEST.SCALE_LIST),
        flip=cfg.TEST.FLIP_TEST,
        base_size=base_size,
        crop_size=(crop_h, crop_w),
        align_corners=cfg.MODEL.ALIGN_CORNERS,
        output_index=cfg.TEST.OUTPUT_INDEX,
        window_batch=cfg.TEST.WINDOW_BATCH,
        amp=cfg.TEST.AMP,
        channels_last=cfg.MODEL.CHANNELS_LAST,
        save_dir=save_dir,
        palette=palette_for(cfg.DATASET.DATASET, cfg.DATASET.NUM_CLASSES),
        id_values=DATASETS[cfg.DATASET.DATASET].id_values,
        wire_metrics=wire,
        wire_threshold=threshold,
        wire_classes=wire_classes(cfg),
        save_prob=cfg.TEST.SAVE_PROB,
        sweep=sweep,
        fuse=cfg.TEST.SCALE_FUSE,
    )
    if info.is_main and metrics is not None and sweep is None:
        metrics["model_file"] = str(model_file)
        metrics["test_set"] = cfg.DATASET.TEST_SET
        metrics["wire_threshold"] = threshold if threshold > 0 else "argmax"
        metrics["zoom"] = float(cfg.TEST.ZOOM)
        write_text_atomic(paths.test_metrics, json.dumps(metrics, indent=2), "the metrics")
    if info.is_main and save_dir is not None:
        logger.info("predictions: %s", save_dir)
    return metrics if info.is_main else None


def _save_prediction(pred: np.ndarray, name: str, save_dir: Path, palette, id_values) -> None:

    save_palette_png(pred, save_dir / f"{name}.png", palette)
    if id_values is not None:
        save_id_png(pred, save_dir / "ids" / f"{name}.png", id_values)


def _save_probability(prob: torch.Tensor, name: str, save_dir: Path) -> None:

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
    fuse: str = "sum",
) -> dict | None:
    """Official multi-scale (+flip) inference over `loader` (batch size 1).

    With labels (the dataset's `has_labels`), returns the metrics summed over all ranks;
    without, returns None. With `save_dir`, writes `<name>.png` palette predictions and, when
    `id_values` is given, `ids/<name>.png` raw-id PNGs (power lines: 0/255). `channels_last`
    (MODEL.CHANNELS_LAST) gives the network channels_last inputs, as training and validation do.

    Decisions: argmax (official) unless `wire_threshold` > 0, where P(wire classes) >= threshold
    makes a wire pixel (lib/core/thresholds.py). `save_prob` adds `probs/<name>.png`, P(wire) in
    8 bits. `sweep` (a ThresholdSweep) collects wire P/R for many thresholds at once.
    `fuse`: how the scales combine (TEST.SCALE_FUSE, lib.core.inference.ScaleFusion).
    """
    net = unwrap(model).eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    device = device_of(net)
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
                fuse=fuse,
                wire_classes=wire_classes,
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
    if sweep is not None:  # every rank's counts and photo count, summed
        counts = torch.from_numpy(np.append(sweep.counts.ravel(), sweep.images))
        all_reduce_sum(counts)
        sweep.counts = counts[:-1].numpy().reshape(sweep.counts.shape)
        sweep.images = int(counts[-1])
    result = cm.compute()
    result["confusion_matrix"] = cm.mat.cpu().tolist()
    if wire_metrics is not None:  # (ours) tolerant wire P/R/F1 and clDice
        wire_metrics.reduce_from_all_processes()
        result["wire"] = wire_metrics.compute()
    return result


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


@torch.no_grad()
def carried_zoom_scores(cfg, model_file: str | Path, zooms: Sequence[float]) -> dict[float, dict]:
    """Wire scores at each zoom of the model's zoom-1 predictions carried to that zoom.

    Each photo of DATASET.TEST_SET is predicted once as it is (TEST.SCALE_LIST, TEST.FLIP_TEST,
    argmax); the prediction is zoomed the way TEST.ZOOM zooms the label (nearest) and scored
    against the zoomed label. The result is what a model that does at zoom z exactly what it
    does at zoom 1 would score there: with a tolerance fixed in pixels, the label's own
    placement error grows with the zoom, so this, not the zoom-1 score, is the reference a
    zoomed score is to be read against. One process, CPU or the device of `cfg`'s run.
    """
    exported = is_exported(model_file)
    device = torch.device("cuda" if torch.cuda.is_available() and not exported else "cpu")
    model = inference_model(cfg, model_file, device)
    dataset = build_dataset(cfg, "test")
    count = min(len(dataset), cfg.TEST.NUM_SAMPLES or len(dataset))
    wire = wire_metrics_from_cfg(cfg)
    if wire is None:
        raise ValueError(f"{cfg.DATASET.DATASET} has no wire class: set WIRE.CLASSES")
    metrics = {z: WireMetrics(wire.wire_classes, wire.tolerance, wire.ignore_label) for z in zooms}
    crop_w, crop_h = cfg.TEST.IMAGE_SIZE
    memory_format = torch.channels_last if cfg.MODEL.CHANNELS_LAST else torch.contiguous_format
    for index in range(count):
        image, label, _, _ = dataset[index]
        pred = multi_scale_inference(
            model, image[None].to(device), num_classes=cfg.DATASET.NUM_CLASSES,
            scales=list(cfg.TEST.SCALE_LIST), flip=cfg.TEST.FLIP_TEST,
            base_size=cfg.TEST.BASE_SIZE, crop_size=(crop_h, crop_w),
            align_corners=cfg.MODEL.ALIGN_CORNERS, output_index=cfg.TEST.OUTPUT_INDEX,
            window_batch=cfg.TEST.WINDOW_BATCH, amp=cfg.TEST.AMP, memory_format=memory_format,
            fuse=cfg.TEST.SCALE_FUSE, wire_classes=wire.wire_classes,
        )
        if pred.shape[-2:] != label.shape[-2:]:
            pred = F.interpolate(pred, label.shape[-2:], mode="bilinear",
                                 align_corners=cfg.MODEL.ALIGN_CORNERS)
        ids = pred[0].argmax(0).cpu().numpy().astype(np.int64)
        for zoom, zoomed_label in dataset.labels_at_zooms(index, zooms).items():
            _, carried = zoom_view(None, ids, zoom, wire.wire_classes)
            metrics[zoom].update(carried, zoomed_label)
    return {z: m.compute() for z, m in metrics.items()}

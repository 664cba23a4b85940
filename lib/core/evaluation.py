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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.config import ExperimentPaths
from lib.core.backends import inference_model, is_exported
from lib.core.inference import InferenceSettings
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
from lib.utils.options import grouped
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
    if cfg.TEST.ZOOM != 1:
        logger.info("photos zoomed %gx (TEST.ZOOM)", cfg.TEST.ZOOM)
    files = None
    if save_dir is not None:
        files = PredictionFiles(save_dir, palette_for(cfg.DATASET.DATASET, cfg.DATASET.NUM_CLASSES),
                                DATASETS[cfg.DATASET.DATASET].id_values, cfg.TEST.SAVE_PROB)
    metrics = testval(
        model,
        loader,
        InferenceSettings.from_cfg(cfg).at_zoom(cfg.TEST.ZOOM),
        ignore_label=cfg.TRAIN.IGNORE_LABEL,
        wire_metrics=wire,
        wire_threshold=threshold,
        sweep=sweep,
        files=files,
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


@dataclass(frozen=True)
class PredictionFiles:
    """Where and how `testval` writes its predictions: `<name>.png` palette PNGs in `folder`,
    `ids/<name>.png` raw-id PNGs when `id_values` is given (power lines: 0/255), and with
    `probabilities` (TEST.SAVE_PROB) `probs/<name>.png`, P(wire) in 8 bits."""

    folder: Path
    palette: Sequence[Sequence[int]] | None = None
    id_values: Sequence[int] | None = None
    probabilities: bool = False

    def save(self, ids: np.ndarray, prob: torch.Tensor | None, name: str) -> None:
        save_palette_png(ids, self.folder / f"{name}.png", self.palette)
        if self.id_values is not None:
            save_id_png(ids, self.folder / "ids" / f"{name}.png", self.id_values)
        if self.probabilities:
            save_id_png(probability_png(prob), self.folder / "probs" / f"{name}.png", None)


@torch.no_grad()
def testval(
    model: nn.Module,
    loader,
    settings: InferenceSettings | None = None,
    *,
    ignore_label: int,
    wire_metrics: WireMetrics | None = None,
    wire_threshold: float = 0.0,
    sweep: ThresholdSweep | None = None,
    files: PredictionFiles | None = None,
    **inference,
) -> dict | None:
    """Official multi-scale (+flip) inference over `loader` (batch size 1) with `settings`
    (or, without them, `InferenceSettings(**inference)`: num_classes=..., scales=..., ...).

    With labels (the dataset's `has_labels`), returns the metrics summed over all ranks;
    without, returns None. With `files`, writes the predictions (`PredictionFiles`).

    Decisions: argmax (official) unless `wire_threshold` > 0, where P(settings.wire_classes)
    >= threshold makes a wire pixel (lib/core/thresholds.py). `sweep` (a ThresholdSweep)
    collects wire P/R for many thresholds at once.
    """
    settings = grouped(InferenceSettings, settings, inference)
    net = unwrap(model).eval()
    device = device_of(net)
    has_labels = getattr(loader.dataset, "has_labels", True)
    cm = ConfusionMatrix(settings.num_classes, ignore_label, device) if has_labels else None
    wire_classes = settings.wire_classes
    for images, labels, _, names in tqdm(
        loader, desc="test", disable=not is_main_process(), dynamic_ncols=True
    ):
        for k in range(len(images)):
            pred = settings.predict(net, images[k : k + 1])
            if cm is not None:
                label = labels[k : k + 1].to(device).long()
                if pred.shape[-2:] != label.shape[-2:]:
                    pred = F.interpolate(pred, label.shape[-2:], mode="bilinear",
                                         align_corners=settings.align_corners)
            ids = decide(pred[0], wire_threshold, wire_classes)  # argmax when threshold <= 0
            want_prob = (sweep is not None and cm is not None) or (
                files is not None and files.probabilities)
            prob = wire_probability(pred[0], wire_classes) if want_prob else None
            if cm is not None:
                cm.update(label, ids[None])
                if wire_metrics is not None:
                    wire_metrics.update(ids, label[0])
                if sweep is not None:
                    sweep.update(prob, label[0])
            if files is not None:
                files.save(ids.cpu().numpy(), prob, names[k])
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
    zoomed score is to be read against. Each zoom's scores also say on how many of the photos
    (`photos`) a labelled wire is in view at that zoom (`photos_with_wire`): a zoom > 1 keeps only
    the centre of each photo, and a score on few wires moves a lot with one photo. One process,
    CPU or the device of `cfg`'s run.
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
    settings = replace(InferenceSettings.from_cfg(cfg), wire_classes=wire.wire_classes)
    in_view = dict.fromkeys(zooms, 0)
    for index in range(count):
        image, label, _, _ = dataset[index]
        pred = settings.predict(model, image[None].to(device))
        if pred.shape[-2:] != label.shape[-2:]:
            pred = F.interpolate(pred, label.shape[-2:], mode="bilinear",
                                 align_corners=settings.align_corners)
        ids = pred[0].argmax(0).cpu().numpy().astype(np.int64)
        for zoom, zoomed_label in dataset.labels_at_zooms(index, zooms).items():
            _, carried = zoom_view(None, ids, zoom, wire.wire_classes)
            metrics[zoom].update(carried, zoomed_label)
            in_view[zoom] += bool(np.isin(zoomed_label, wire.wire_classes).any())
    return {z: {**m.compute(), "photos_with_wire": in_view[z], "photos": count}
            for z, m in metrics.items()}

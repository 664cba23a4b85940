"""`main` of tools/test.py: weights + DATASET.TEST_SET -> metrics (json, table) and/or PNGs.

Loads TEST.MODEL_FILE (default: OUTPUT_DIR/<dataset>/<cfg name>/final_state.pth; our files and
the official ones alike), runs the official multi-scale (TEST.SCALE_LIST) + flip
(TEST.FLIP_TEST) inference with TEST.IMAGE_SIZE windows, and writes palette PNGs (plus 0/255 id
PNGs for power lines) under the output folder. Runs on CPU, one GPU, or under torchrun.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from torch.utils.data import DataLoader

from lib.config import config_name, get_config
from lib.core.function import metrics_table, testval
from lib.core.thresholds import resolve_threshold
from lib.core.trainer import limit
from lib.core.wire_metrics import wire_metrics_from_cfg
from lib.utils.amp import configure_backends
from lib.utils.distributed import ShardSampler, cleanup, init_distributed
from lib.utils.logs import log_cli_error, setup_logging

logger = logging.getLogger(__name__)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate a segmentation network")
    parser.add_argument("--cfg", required=True, help="experiment yaml file")
    parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=-1)
    parser.add_argument(
        "--no-save", dest="save", action="store_false", help="do not write prediction PNGs"
    )
    parser.add_argument(
        "opts", nargs="*", help="KEY VALUE config overrides (flags may come before or after)"
    )
    return parser.parse_intermixed_args(argv)


def evaluate(
    cfg, name: str, local_rank: int = -1, save: bool = True, sweep=None
) -> dict | None:
    """Run tools/test.py's work; returns the metrics (labelled list) or None (predictions only).

    `sweep` (a lib.core.thresholds.ThresholdSweep) also collects wire P/R per threshold.
    """
    from lib.datasets import build_dataset
    from lib.datasets.palette import POWERLINE_ID_VALUES, palette_for
    from lib.models import get_seg_model, load_weights
    from lib.models.fusion import prepare_for_inference
    from lib.models.summary import model_summary

    info = init_distributed(local_rank)
    configure_backends(cfg)
    out_dir = Path(cfg.OUTPUT_DIR) / cfg.DATASET.DATASET / name
    setup_logging(info.rank, out_dir / f"{name}_test.log" if info.is_main else None)
    logger.info("%s", info.describe())

    model_file = Path(cfg.TEST.MODEL_FILE) if cfg.TEST.MODEL_FILE else out_dir / "final_state.pth"
    threshold, source = resolve_threshold(cfg, model_file)
    wire = wire_metrics_from_cfg(cfg)
    if threshold > 0:
        logger.info("wire where P(wire) >= %.4g (%s)", threshold, source)
    model = get_seg_model(cfg, load_pretrained=False)
    load_weights(model, model_file, strict=True)
    if info.is_main:
        crop_w, crop_h = cfg.TEST.IMAGE_SIZE
        logger.info("model: %s", model_summary(model, crop_h, crop_w))
    model = prepare_for_inference(model, cfg, info.device)  # eval, TEST.FOLD_BN, CHANNELS_LAST

    dataset = limit(build_dataset(cfg, "test"), cfg.TEST.NUM_SAMPLES)
    loader = DataLoader(
        dataset,
        batch_size=1,
        sampler=ShardSampler(len(dataset), info.rank, info.world_size),
        num_workers=cfg.WORKERS,
        pin_memory=cfg.PIN_MEMORY and info.device.type == "cuda",
    )
    has_labels = getattr(dataset, "has_labels", True)
    save_dir = out_dir / ("val_results" if has_labels else "test_results") if save else None
    crop_w, crop_h = cfg.TEST.IMAGE_SIZE
    metrics = testval(
        model,
        loader,
        num_classes=cfg.DATASET.NUM_CLASSES,
        ignore_label=cfg.TRAIN.IGNORE_LABEL,
        scales=list(cfg.TEST.SCALE_LIST),
        flip=cfg.TEST.FLIP_TEST,
        base_size=cfg.TEST.BASE_SIZE,
        crop_size=(crop_h, crop_w),
        align_corners=cfg.MODEL.ALIGN_CORNERS,
        output_index=cfg.TEST.OUTPUT_INDEX,
        window_batch=cfg.TEST.WINDOW_BATCH,
        amp=cfg.TEST.AMP,
        channels_last=cfg.MODEL.CHANNELS_LAST,
        save_dir=save_dir,
        palette=palette_for(cfg.DATASET.DATASET, cfg.DATASET.NUM_CLASSES),
        id_values=POWERLINE_ID_VALUES if cfg.DATASET.DATASET == "daodixian_seg" else None,
        wire_metrics=wire,
        wire_threshold=threshold,
        wire_classes=wire.wire_classes if wire is not None else (1,),
        save_prob=cfg.TEST.SAVE_PROB,
        sweep=sweep,
    )
    if info.is_main and metrics is not None and sweep is None:
        metrics["model_file"] = str(model_file)
        metrics["test_set"] = cfg.DATASET.TEST_SET
        metrics["wire_threshold"] = threshold if threshold > 0 else "argmax"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=2))
    if info.is_main and save_dir is not None:
        logger.info("predictions: %s", save_dir)
    return metrics if info.is_main else None


def main(argv=None) -> int:
    """CLI entry: prints the metrics table; errors become one logged line and exit code 1."""
    args = parse_args(argv)
    try:
        cfg = get_config(args.cfg, args.opts)
        metrics = evaluate(cfg, config_name(args.cfg), args.local_rank, args.save)
    except (ValueError, RuntimeError, OSError) as err:
        log_cli_error(logger, err)
        return 1
    finally:
        cleanup()
    if metrics is not None:
        print(metrics_table(metrics))
    return 0

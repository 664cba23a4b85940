"""`main` of tools/train.py: config -> data, model, loss, optimizer -> epochs -> checkpoints.

Read top to bottom: set-up (distributed, seeds, folders, logs), data, model, optimizer, resume,
then per epoch: train_one_epoch, validate, save. Works as `python tools/train.py --cfg X`,
under `torchrun --nproc_per_node=N` (any number of nodes) and the legacy
`python -m torch.distributed.launch` (`--local_rank` / `--local-rank`).
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from lib.config import config_name, get_config
from lib.core.function import train_one_epoch, validate
from lib.core.wire_metrics import wire_metrics_from_cfg
from lib.utils.amp import configure_backends, grad_scaler  # noqa: F401 (re-exported)
from lib.utils.checkpoint import (
    load_file,
    official_state_dict,
    rng_state,
    save_atomic,
    set_rng_state,
)
from lib.utils.distributed import (
    DistInfo,
    DistributedSetupError,
    ShardSampler,
    all_gather_object,
    broadcast_object,
    cleanup,
    init_distributed,
    maybe_sync_batchnorm,
    wrap_ddp,
)
from lib.utils.logs import log_cli_error, setup_logging
from lib.utils.lr import build_optimizer

logger = logging.getLogger(__name__)


def parse_args(argv=None, default_cfg: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a segmentation network (HRNet / OCR)")
    parser.add_argument(
        "--cfg", default=default_cfg, required=default_cfg is None, help="experiment yaml file"
    )
    # the legacy torch.distributed.launch passes one of these (also in the environment)
    parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=-1)
    parser.add_argument(
        "opts", nargs="*", help="KEY VALUE config overrides (flags may come before or after)"
    )
    return parser.parse_intermixed_args(argv)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def output_dirs(cfg, name: str) -> tuple[Path, Path]:
    """(OUTPUT_DIR/<dataset>/<name>, LOG_DIR/<dataset>/<name>_<time>) as officially."""
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
    out_dir = Path(cfg.OUTPUT_DIR) / cfg.DATASET.DATASET / name
    log_dir = Path(cfg.LOG_DIR) / cfg.DATASET.DATASET / f"{name}_{stamp}"
    return out_dir, log_dir


def limit(dataset, num_samples: int):
    """TRAIN/TEST.NUM_SAMPLES: the first N samples (0: all), keeping the dataset attributes."""
    if num_samples and num_samples < len(dataset):
        subset = Subset(dataset, range(num_samples))
        for attr in ("has_labels", "class_weights", "num_classes", "ignore_label"):
            if hasattr(dataset, attr):
                setattr(subset, attr, getattr(dataset, attr))
        return subset
    return dataset


def make_loader(cfg, dataset, info: DistInfo, *, train: bool, epoch_seed: int = 0) -> DataLoader:
    """Training: DistributedSampler (shuffle, drop_last batches); evaluation: unpadded shards."""
    workers = cfg.WORKERS
    common = dict(
        num_workers=workers,
        pin_memory=cfg.PIN_MEMORY and info.device.type == "cuda",
        # persistent workers keep their RNG across epochs, which an exact resume cannot replay
        persistent_workers=workers > 0 and cfg.TRAIN.PERSISTENT_WORKERS and not cfg.DETERMINISTIC,
    )
    if not train:
        sampler = ShardSampler(len(dataset), info.rank, info.world_size)
        return DataLoader(
            dataset, batch_size=cfg.TEST.BATCH_SIZE_PER_GPU, sampler=sampler, **common
        )
    if info.distributed:
        sampler = DistributedSampler(
            dataset,
            info.world_size,
            info.rank,
            shuffle=cfg.TRAIN.SHUFFLE,
            seed=cfg.SEED + epoch_seed,
        )
        return DataLoader(
            dataset,
            batch_size=cfg.TRAIN.BATCH_SIZE_PER_GPU,
            sampler=sampler,
            drop_last=True,
            **common,
        )
    return DataLoader(
        dataset,
        batch_size=cfg.TRAIN.BATCH_SIZE_PER_GPU,
        shuffle=cfg.TRAIN.SHUFFLE,
        drop_last=True,
        **common,
    )


def decide_resume(ckpt_path: Path, wanted: bool, info: DistInfo) -> bool:
    """Whether this run resumes from `ckpt_path`: decided once, by rank 0, for every rank.

    Ranks that each looked for the file themselves could start at different epochs on nodes
    without a shared OUTPUT_DIR and then wait on each other forever; here, when rank 0 resumes
    and another rank cannot read the file, every rank stops with one line naming those ranks.
    """
    resume, path0 = broadcast_object((bool(wanted) and ckpt_path.is_file(), str(ckpt_path)))
    if wanted and not resume and info.is_main:
        logger.warning(
            "TRAIN.RESUME / AUTO_RESUME is set but %s does not exist: starting from the beginning",
            ckpt_path,
        )
    if resume:
        seen = all_gather_object(ckpt_path.is_file())
        missing = [rank for rank, ok in enumerate(seen) if not ok]
        if missing:
            raise DistributedSetupError(
                f"rank 0 resumes from {path0} but rank(s) {', '.join(map(str, missing))} "
                "cannot see that file: give all nodes a shared OUTPUT_DIR or copy the checkpoint "
                "to each node"
            )
    return resume


def check_fresh_start(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """A new run must not replace an earlier run's files unless told (TRAIN.OVERWRITE); decided
    by rank 0 for every rank, like the resume."""
    found = [n for n in ("checkpoint.pth.tar", "best.pth", "final_state.pth") if (out_dir / n).is_file()]
    found = broadcast_object(found)
    if found and not resume and not overwrite:
        raise ValueError(
            f"{out_dir} holds an earlier run ({', '.join(found)}): continue it with TRAIN.RESUME "
            "True, replace it with TRAIN.OVERWRITE True, or choose another OUTPUT_DIR"
        )
    if found and not resume:
        logger.warning("TRAIN.OVERWRITE: the earlier run's %s in %s will be replaced",
                       ", ".join(found), out_dir)


def train(cfg, name: str, local_rank: int = -1, progress: dict | None = None) -> dict:
    """Run a whole training; returns {"best_mIoU", "last": last validation metrics, "out_dir"}.

    `progress` (optional) is kept up to date with the checkpoint path and the last saved epoch,
    so a caller can say where to resume after an interruption.
    """
    progress = progress if progress is not None else {}
    from tensorboardX import SummaryWriter

    from lib.core.criterion import build_criterion
    from lib.datasets import build_dataset
    from lib.datasets.palette import palette_for
    from lib.models import get_seg_model, load_weights
    from lib.models.summary import model_summary

    info = init_distributed(local_rank)
    device, main_rank = info.device, info.is_main
    seed_everything(cfg.SEED + info.rank)
    configure_backends(cfg)
    out_dir, log_dir = output_dirs(cfg, name)
    if main_rank:
        out_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(info.rank, log_dir / f"{name}_train.log" if main_rank else None)
    logger.info("%s", info.describe())
    writer = SummaryWriter(str(log_dir)) if main_rank else None
    logger.info("config %s, %d process(es) on %s\n%s", name, info.world_size, device, cfg.dump())

    # data
    train_set = limit(build_dataset(cfg, "train"), cfg.TRAIN.NUM_SAMPLES)
    val_set = limit(build_dataset(cfg, "val"), cfg.TEST.NUM_SAMPLES)
    train_loader = make_loader(cfg, train_set, info, train=True)
    val_loader = make_loader(cfg, val_set, info, train=False)
    extra_loader = None
    if cfg.TRAIN.EXTRA_EPOCH > 0:
        extra_set = limit(build_dataset(cfg, "extra"), cfg.TRAIN.NUM_SAMPLES)
        extra_loader = make_loader(cfg, extra_set, info, train=True)
    epoch_iters = len(train_loader)  # official: int(len / batch / world), with drop_last
    if epoch_iters == 0:
        raise ValueError(
            f"{cfg.DATASET.TRAIN_SET}: {len(train_set)} samples give no full batch of "
            f"TRAIN.BATCH_SIZE_PER_GPU={cfg.TRAIN.BATCH_SIZE_PER_GPU} on {info.world_size} process(es)"
        )

    # model, loss, optimizer
    model = get_seg_model(cfg)
    if main_rank:
        crop_w, crop_h = cfg.TRAIN.IMAGE_SIZE
        logger.info("model: %s", model_summary(model, crop_h, crop_w))
    model = maybe_sync_batchnorm(model, info).to(device)
    synced = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    if synced:
        logger.info("SyncBatchNorm: %d layers synchronised over %d process(es)", synced, info.world_size)
    if cfg.MODEL.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    criterion = build_criterion(cfg, getattr(train_set, "class_weights", None)).to(device)
    optimizer = build_optimizer(cfg, model)
    scaler = grad_scaler(cfg.TRAIN.AMP, device)  # enabled only for fp16 on CUDA

    # resume
    start_epoch, best_miou = cfg.TRAIN.BEGIN_EPOCH, 0.0
    ckpt_path = out_dir / "checkpoint.pth.tar"
    progress.update(checkpoint=ckpt_path, saved_epoch=None)
    resume = decide_resume(ckpt_path, cfg.TRAIN.RESUME or cfg.AUTO_RESUME, info)
    check_fresh_start(out_dir, resume, cfg.TRAIN.OVERWRITE)
    if resume:
        ckpt = load_file(ckpt_path)
        load_weights(model, ckpt, strict=True)
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best_miou = ckpt["epoch"], ckpt["best_mIoU"]
        progress["saved_epoch"] = start_epoch
        rngs = ckpt.get("rng")
        if rngs and len(rngs) == info.world_size:
            set_rng_state(rngs[info.rank])
        logger.info(
            "resumed from %s at epoch %d (best mIoU %.4f)", ckpt_path, start_epoch, best_miou
        )
    ddp_model = wrap_ddp(model, info)

    end_epoch = cfg.TRAIN.END_EPOCH + cfg.TRAIN.EXTRA_EPOCH
    freeze = [s.strip() for s in cfg.TRAIN.FREEZE_LAYERS.split(",") if s.strip()]
    palette = palette_for(cfg.DATASET.DATASET, cfg.DATASET.NUM_CLASSES)
    metrics: dict = {}
    for epoch in range(start_epoch, end_epoch):
        extra = epoch >= cfg.TRAIN.END_EPOCH
        loader = extra_loader if extra else train_loader
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        if extra:
            phase_epoch, base_lr = epoch - cfg.TRAIN.END_EPOCH, cfg.TRAIN.EXTRA_LR
            iters, max_iters = len(loader), cfg.TRAIN.EXTRA_EPOCH * len(loader)
        else:
            phase_epoch, base_lr = epoch, cfg.TRAIN.LR
            iters, max_iters = epoch_iters, cfg.TRAIN.END_EPOCH * epoch_iters
        stats = train_one_epoch(
            ddp_model,
            criterion,
            optimizer,
            loader,
            epoch=epoch,
            base_lr=base_lr,
            first_iter=phase_epoch * iters,
            max_iters=max_iters,
            device=device,
            scaler=scaler,
            amp=cfg.TRAIN.AMP,
            channels_last=cfg.MODEL.CHANNELS_LAST,
            freeze=freeze if epoch < cfg.TRAIN.FREEZE_EPOCHS else (),
            writer=writer,
            print_freq=cfg.PRINT_FREQ,
        )
        validated = (epoch + 1) % max(1, cfg.TRAIN.EVAL_INTERVAL) == 0 or epoch + 1 == end_epoch
        if validated:
            metrics = validate(
                ddp_model,
                criterion,
                val_loader,
                num_classes=cfg.DATASET.NUM_CLASSES,
                ignore_label=cfg.TRAIN.IGNORE_LABEL,
                device=device,
                align_corners=cfg.MODEL.ALIGN_CORNERS,
                amp=cfg.TEST.AMP,
                channels_last=cfg.MODEL.CHANNELS_LAST,
                writer=writer,
                epoch=epoch,
                palette=palette,
                wire_metrics=wire_metrics_from_cfg(cfg),
            )
        rngs = all_gather_object(rng_state())  # every rank's generators, for an exact resume
        if main_rank:
            state = official_state_dict(model, criterion)
            if validated and metrics["miou"] > best_miou:
                best_miou = metrics["miou"]
                save_atomic(state, out_dir / "best.pth")
            save_atomic(
                {
                    "epoch": epoch + 1,
                    "best_mIoU": best_miou,
                    "state_dict": state,
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "iteration": (phase_epoch + 1) * iters,
                    "rng": rngs,
                    "metrics": {
                        k: metrics[k]
                        for k in ("miou", "iou", "confusion_matrix", "wire")
                        if k in metrics
                    },
                },
                ckpt_path,
            )
        progress["saved_epoch"] = epoch + 1
        val = (
            f"val loss {metrics['loss']:.4f}, mIoU {metrics['miou']:.4f} (best {best_miou:.4f}), "
            f"IoU {' '.join(f'{v:.4f}' for v in metrics['iou'])}"
            if validated
            else "not validated"
        )
        logger.info(
            "epoch %d/%d: loss %.4f, lr %.3g, %.1f s | %s",
            epoch + 1,
            end_epoch,
            stats["loss"],
            stats["lr"],
            stats["seconds"],
            val,
        )
        if epoch + 1 == cfg.TRAIN.STOP_AFTER_EPOCH < end_epoch:
            logger.info(
                "stopped after epoch %d (TRAIN.STOP_AFTER_EPOCH); resume with TRAIN.RESUME True "
                "from %s",
                epoch + 1,
                ckpt_path,
            )
            if writer is not None:
                writer.close()
            return {"best_mIoU": best_miou, "last": metrics, "out_dir": out_dir, "stopped": epoch + 1}
    if main_rank:
        save_atomic(official_state_dict(model, criterion), out_dir / "final_state.pth")
        writer.close()
        logger.info("done: %s (best mIoU %.4f)", out_dir / "final_state.pth", best_miou)
    return {"best_mIoU": best_miou, "last": metrics, "out_dir": out_dir}


def main(argv=None, default_cfg: str | None = None) -> int:
    """CLI entry: returns the exit code; errors become one logged line."""
    args = parse_args(argv, default_cfg)
    progress: dict = {}
    try:
        cfg = get_config(args.cfg, args.opts)
        train(cfg, config_name(args.cfg), args.local_rank, progress)
    except (ValueError, RuntimeError, OSError) as err:
        log_cli_error(logger, err)
        return 1
    except KeyboardInterrupt:
        logger.error("%s", interrupted_message(progress))
        return 130
    finally:
        cleanup()
    return 0


def interrupted_message(progress: dict) -> str:
    """One line after Ctrl-C: what is saved and how to go on."""
    saved, ckpt = progress.get("saved_epoch"), progress.get("checkpoint")
    if not saved or ckpt is None:
        return "interrupted before the first checkpoint was saved: nothing to resume"
    return (
        f"interrupted: {ckpt} holds epoch {saved}; run the same command with TRAIN.RESUME True "
        "to continue from there"
    )

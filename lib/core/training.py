"""Training, read top to bottom: `train` (set-up, then per epoch: train_one_epoch, validate,
save), `train_one_epoch` (every step of an iteration), `validate` (single scale, whole images).

`train(cfg, name)` works in one process, under `torchrun --nproc_per_node=N` (any number of
nodes) and under the legacy `python -m torch.distributed.launch`; tools/train.py is its command
line. Every step of a training iteration is in `train_one_epoch`: data to device, lr, forward
and loss (under autocast when TRAIN.AMP is set), a NaN check, backward, step, log.

How many epochs run, when they are validated and when the run stops early is
`lib.core.budget.EpochPlan` (TRAIN.END_EPOCH / EXTRA_EPOCH, TIME_BUDGET, EVAL_INTERVAL,
STOP_AFTER_EPOCH); the best-checkpoint rule is `RunState.record_validation`; a caller that must
say where to resume after an interruption passes a `Progress`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tensorboardX import SummaryWriter
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler
from tqdm import tqdm
from yacs.config import CfgNode

from lib.config import ExperimentPaths
from lib.core import budget as time_budget
from lib.core.criterion import build_criterion
from lib.core.inference import sliding_windows
from lib.core.metrics import ConfusionMatrix
from lib.core.wire_metrics import WireMetrics, wire_metrics_from_cfg
from lib.datasets import build_dataset
from lib.datasets.palette import palette_for
from lib.models import get_seg_model, load_weights
from lib.models.summary import model_summary
from lib.utils.amp import autocast, autocast_dtype, grad_scaler
from lib.utils.atomic import write_text_atomic
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
    MixSampler,
    ShardSampler,
    all_gather_object,
    all_gather_tensor,
    all_reduce,
    all_reduce_sum,
    broadcast_object,
    get_world_size,
    init_distributed,
    is_main_process,
    maybe_sync_batchnorm,
    unwrap,
    wrap_ddp,
)
from lib.utils.lock import output_lock
from lib.utils.logs import setup_logging
from lib.utils.optim import PolySchedule, build_optimizer
from lib.utils.options import grouped
from lib.utils.runtime import configure_backends, limit, limit_worker_threads, seed_everything

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """How far a run got, kept up to date by `train` as it saves, so that a caller still knows
    after `train` raised (Ctrl-C, a NaN loss): the checkpoint file and the last epoch it holds
    (None until this run saved or resumed one)."""

    checkpoint: Path | None = None
    saved_epoch: int | None = None

    @property
    def resumable(self) -> bool:
        """Whether a checkpoint of this run holds a finished epoch to resume from."""
        return bool(self.saved_epoch)

    def interrupted_message(self) -> str:
        """One line after Ctrl-C: what is saved and how to go on."""
        if not self.saved_epoch or self.checkpoint is None:
            return "interrupted before the first checkpoint was saved: nothing to resume"
        return (
            f"interrupted: {self.checkpoint} holds epoch {self.saved_epoch}; run the same command "
            "with TRAIN.RESUME True to continue from there"
        )


@dataclass
class RunState:
    """What the loop carries from epoch to epoch: the next epoch to train, the best validation
    mIoU so far and the last validation's metrics ({} until one ran in this process)."""

    epoch: int
    best_miou: float = 0.0
    metrics: dict = field(default_factory=dict)

    def record_validation(self, metrics: dict) -> bool:
        """Keep `metrics` as the last validation's; True when their mIoU beats the best so far
        (the best-checkpoint rule: best.pth is then replaced)."""
        self.metrics = metrics
        if metrics["miou"] > self.best_miou:
            self.best_miou = metrics["miou"]
            return True
        return False

    def result(self, out_dir: Path, **extra) -> dict:
        return {"best_mIoU": self.best_miou, "last": self.metrics, "out_dir": out_dir, **extra}


@dataclass(frozen=True)
class _Run:
    """What every epoch of a run uses: its config, processes, files, network and optimiser."""

    cfg: CfgNode
    info: DistInfo
    paths: ExperimentPaths
    writer: SummaryWriter | None
    model: nn.Module  # the network itself (its state is what is saved)
    ddp_model: nn.Module  # the network as trained (DistributedDataParallel when distributed)
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loaders: dict


def train(cfg, name: str, local_rank: int = -1, progress: Progress | None = None) -> dict:
    """Run a whole training; returns {"best_mIoU", "last": last validation metrics, "out_dir"}
    (and "stopped": the epoch count after TRAIN.STOP_AFTER_EPOCH stopped it).

    `progress` (optional, a `Progress`) is updated as checkpoints are saved, so that a caller
    can say where to resume after an interruption. Rank 0 holds the output folder's lock for
    the whole run: a second training into the same folder is refused.
    """
    with contextlib.ExitStack() as held:
        return _train(cfg, name, local_rank, progress if progress is not None else Progress(), held)


def _train(cfg, name: str, local_rank: int, progress: Progress,
           held: contextlib.ExitStack) -> dict:
    started = time_budget.clock()
    run, state, saved_budget = _set_up(cfg, name, local_rank, held, progress)
    plan = time_budget.EpochPlan(cfg, started, saved_budget)
    while state.epoch < plan.end:
        epoch = state.epoch
        stats, iteration = _train_epoch(run, epoch, plan.main_epochs)
        plan.trained(epoch + 1)
        validated = plan.validates(epoch + 1)
        best = validated and state.record_validation(_validate(run, epoch))
        _save_checkpoint(run, state, epoch + 1, iteration, best, plan)
        progress.saved_epoch = epoch + 1
        logger.info("%s", _epoch_line(epoch, plan.end, stats, state.metrics if validated else None,
                                      state.best_miou))
        if plan.stops_early(epoch + 1):
            logger.info(
                "stopped after epoch %d (TRAIN.STOP_AFTER_EPOCH); resume with TRAIN.RESUME True "
                "from %s", epoch + 1, run.paths.checkpoint,
            )  # fmt: skip
            if run.writer is not None:
                run.writer.close()
            return state.result(run.paths.out_dir, stopped=epoch + 1)
        state.epoch += 1
    plan.log_summary()
    if run.info.is_main:
        save_atomic(official_state_dict(run.model, run.criterion), run.paths.final)
        run.writer.close()
        logger.info("done: %s (best mIoU %.4f)", run.paths.final, state.best_miou)
    return state.result(run.paths.out_dir)


def _set_up(cfg, name: str, local_rank: int, held: contextlib.ExitStack, progress: Progress):
    """(the `_Run`, the `RunState` to start from, the checkpoint's TRAIN.TIME_BUDGET record or
    None): processes, seeds, the output folder (locked by rank 0), logging, data, network,
    loss, optimiser, and the resumed state when the run continues (`progress` says so)."""
    info = init_distributed(local_rank)
    seed_everything(cfg.SEED + info.rank)
    configure_backends(cfg)
    paths = ExperimentPaths.of(cfg, name)
    log_dir = paths.train_log_dir()
    if info.is_main:
        paths.out_dir.mkdir(parents=True, exist_ok=True)
        held.enter_context(output_lock(paths.out_dir, "training"))
    setup_logging(info.rank, log_dir / f"{name}_train.log" if info.is_main else None)
    logger.info("%s", info.describe())
    writer = SummaryWriter(str(log_dir)) if info.is_main else None
    logger.info("config %s, %d process(es) on %s\n%s", name, info.world_size, info.device,
                cfg.dump())

    for key in ("TRAIN.AMP", "TEST.AMP"):  # fp16 on a CPU run: refused now, not at validation
        section, leaf = key.split(".")
        autocast_dtype(cfg[section][leaf], info.device, key)
    train_set, loaders = _datasets_and_loaders(cfg, info)
    model, criterion = _model_and_loss(cfg, info, getattr(train_set, "class_weights", None))
    optimizer = build_optimizer(cfg, model)
    scaler = grad_scaler(cfg.TRAIN.AMP, info.device)  # enabled only for fp16 on CUDA
    progress.checkpoint, progress.saved_epoch = paths.checkpoint, None
    state, resumed, saved_budget = _resume(cfg, paths, info, model, optimizer, scaler)
    if resumed:
        progress.saved_epoch = state.epoch
    run = _Run(cfg, info, paths, writer, model, wrap_ddp(model, info), criterion, optimizer,
               scaler, loaders)
    return run, state, saved_budget


def _train_epoch(run: _Run, epoch: int, main_epochs: int) -> tuple[dict, int]:
    """(train_one_epoch's stats, the phase's iteration count after the epoch) for `epoch`."""
    cfg = run.cfg
    loader, schedule, phase_epoch, iters = _phase(cfg, run.loaders, epoch, main_epochs)
    stats = train_one_epoch(
        run.ddp_model, run.criterion, run.optimizer, loader,
        epoch=epoch, schedule=schedule, first_iter=phase_epoch * iters,
        device=run.info.device, scaler=run.scaler, step=StepSettings.from_cfg(cfg, epoch),
        writer=run.writer,
    )  # fmt: skip
    return stats, (phase_epoch + 1) * iters


def _validate(run: _Run, epoch: int) -> dict:
    """`validate` on the run's validation loader after `epoch` (TEST.VAL_WINDOW, wire scores)."""
    cfg = run.cfg
    return validate(
        run.ddp_model, run.criterion, run.loaders["val"], ValidationSettings.from_cfg(cfg),
        device=run.info.device, epoch=epoch, wire_metrics=wire_metrics_from_cfg(cfg),
        writer=run.writer, palette=palette_for(cfg.DATASET.DATASET, cfg.DATASET.NUM_CLASSES),
    )  # fmt: skip


def _save_checkpoint(run: _Run, state: RunState, epochs_done: int, iteration: int, best: bool,
                     plan: time_budget.EpochPlan) -> None:
    """checkpoint.pth.tar after every epoch (and best.pth when `best`), written atomically by
    rank 0; every rank's generators go in it, so that a resume is exact."""
    rngs = all_gather_object(rng_state())  # a collective: every rank takes part
    if not run.info.is_main:
        return
    weights = official_state_dict(run.model, run.criterion)
    if best:
        save_atomic(weights, run.paths.best)
    save_atomic(
        {
            "epoch": epochs_done,
            "best_mIoU": state.best_miou,
            "state_dict": weights,
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "iteration": iteration,
            "rng": rngs,
            **plan.checkpoint_state(),
            "metrics": {
                k: state.metrics[k]
                for k in ("miou", "iou", "confusion_matrix", "wire")
                if k in state.metrics
            },
        },
        run.paths.checkpoint,
    )


def _datasets_and_loaders(cfg, info: DistInfo) -> tuple:
    """(the training set, {"train", "val", "extra" (or None)} loaders): dataset -> limit ->
    loader for each split, and a one-line error when the training set gives no full batch."""
    splits = {"train": ("train", cfg.TRAIN.NUM_SAMPLES, True),
              "val": ("val", cfg.TEST.NUM_SAMPLES, False)}
    if cfg.TRAIN.EXTRA_EPOCH > 0:
        splits["extra"] = ("extra", cfg.TRAIN.NUM_SAMPLES, True)
    sets = {key: limit(build_dataset(cfg, split), n) for key, (split, n, _) in splits.items()}
    loaders = {key: make_loader(cfg, sets[key], info, train=training)
               for key, (_, _, training) in splits.items()}
    if cfg.DATASET.MIX_RATIO > 0:  # (ours) DATASET.MIX_SET mixed into every main-phase epoch
        loaders["train"] = _mixed_loader(cfg, sets["train"], build_dataset(cfg, "mix"), info)
    loaders.setdefault("extra", None)
    if cfg.DATASET.CACHE_DIR and info.is_main:
        logger.info("decode cache: %s (each training photo decoded once, kept there; "
                    "DATASET.CACHE_DIR)", cfg.DATASET.CACHE_DIR)
    if len(loaders["train"]) == 0:  # official: int(len / batch / world), with drop_last
        raise ValueError(
            f"{cfg.DATASET.TRAIN_SET}: {len(sets['train'])} samples give no full batch of "
            f"TRAIN.BATCH_SIZE_PER_GPU={cfg.TRAIN.BATCH_SIZE_PER_GPU} on {info.world_size} "
            "process(es)"
        )
    return sets["train"], loaders


def _mixed_loader(cfg, own, mixed, info: DistInfo) -> DataLoader:
    """The main phase's loader over `own` plus round(MIX_RATIO * len(own)) samples of `mixed`
    in each epoch (MixSampler: seeded by SEED and the epoch, sharded over the ranks)."""
    per_epoch = round(cfg.DATASET.MIX_RATIO * len(own))
    if len(mixed) == 0:
        raise ValueError(f"{cfg.DATASET.MIX_SET}: the list to mix in holds no samples")
    if info.is_main:
        logger.info("each epoch: %d samples of %s and %d of %s (DATASET.MIX_RATIO %g)", len(own),
                    cfg.DATASET.TRAIN_SET, per_epoch, cfg.DATASET.MIX_SET, cfg.DATASET.MIX_RATIO)
    sampler = MixSampler(len(own), len(mixed), per_epoch, cfg.SEED, shuffle=cfg.TRAIN.SHUFFLE,
                         rank=info.rank, world_size=info.world_size)
    return DataLoader(ConcatDataset([own, mixed]), batch_size=cfg.TRAIN.BATCH_SIZE_PER_GPU,
                      sampler=sampler, drop_last=True, **_loader_options(cfg, info))


def _model_and_loss(cfg, info: DistInfo, class_weights) -> tuple[nn.Module, nn.Module]:
    """The network (MODEL.PRETRAINED loaded; SyncBatchNorm when distributed on GPUs) and the
    criterion, on the process's device."""
    model = get_seg_model(cfg)
    if info.is_main:
        crop_w, crop_h = cfg.TRAIN.IMAGE_SIZE
        logger.info("model: %s", model_summary(model, crop_h, crop_w))
    model = maybe_sync_batchnorm(model, info).to(info.device)
    synced = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    if synced:
        logger.info("SyncBatchNorm: %d layers synchronised over %d process(es)", synced,
                    info.world_size)
    if cfg.MODEL.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    return model, build_criterion(cfg, class_weights).to(info.device)


def _resume(cfg, paths: ExperimentPaths, info: DistInfo, model, optimizer,
            scaler) -> tuple[RunState, bool, dict | None]:
    """(the state to start from, resumed?, the checkpoint's TRAIN.TIME_BUDGET record or None):
    TRAIN.BEGIN_EPOCH and best mIoU 0, or the checkpoint's epoch and best, with the model,
    optimizer, scaler and this rank's generators restored from it."""
    resume = decide_resume(paths.checkpoint, cfg.TRAIN.RESUME or cfg.AUTO_RESUME, info)
    check_fresh_start(paths.out_dir, resume, cfg.TRAIN.OVERWRITE)
    if info.is_main:
        if not resume:
            say_if_renamed(paths, cfg.dump())
        write_text_atomic(paths.config, cfg.dump(), "the run's config")
    if not resume:
        return RunState(cfg.TRAIN.BEGIN_EPOCH, 0.0), False, None
    ckpt = load_file(paths.checkpoint)
    load_weights(model, ckpt, strict=True)
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    rngs = ckpt.get("rng")
    if rngs and len(rngs) == info.world_size:
        set_rng_state(rngs[info.rank])
    logger.info("resumed from %s at epoch %d (best mIoU %.4f)", paths.checkpoint, ckpt["epoch"],
                ckpt["best_mIoU"])
    return RunState(ckpt["epoch"], ckpt["best_mIoU"]), True, ckpt.get("time_budget")


def say_if_renamed(paths: ExperimentPaths, config: str) -> list[Path]:
    """A new run whose exact config already ran under another name (a renamed yaml file) says
    so in one line, naming the earlier folder; returns those folders."""
    earlier = sorted(
        p.parent
        for p in paths.out_dir.parent.glob(f"*/{paths.config.name}")
        if p.parent != paths.out_dir and (p.parent / paths.checkpoint.name).is_file()
        and p.read_text(encoding="utf-8", errors="replace") == config
    )
    if earlier:
        logger.warning(
            "starting a new run in %s, but %s holds a run of this same config (a renamed yaml "
            "file?): to continue that one, train with its yaml name and TRAIN.RESUME True",
            paths.out_dir, earlier[0],
        )  # fmt: skip
    return earlier


def _phase(cfg, loaders: dict, epoch: int, main_epochs: int):
    """(loader, the phase's poly schedule, epoch within the phase, iterations per epoch) for the
    main phase (`main_epochs` epochs from TRAIN.LR: TRAIN.END_EPOCH, or the number planned
    for TRAIN.TIME_BUDGET) or the extra one (EXTRA_EPOCH from EXTRA_LR)."""
    extra = epoch >= main_epochs
    loader = loaders["extra"] if extra else loaders["train"]
    if isinstance(loader.sampler, (DistributedSampler, MixSampler)):
        loader.sampler.set_epoch(epoch)
    if extra:
        iters = len(loader)
        schedule = PolySchedule(cfg.TRAIN.EXTRA_LR, cfg.TRAIN.EXTRA_EPOCH * iters)
        return loader, schedule, epoch - main_epochs, iters
    iters = len(loaders["train"])
    return loader, PolySchedule(cfg.TRAIN.LR, main_epochs * iters), epoch, iters


def _epoch_line(epoch: int, end_epoch: int, stats: dict, metrics: dict | None, best: float) -> str:
    val = (
        f"val loss {metrics['loss']:.4f}, mIoU {metrics['miou']:.4f} (best {best:.4f}), "
        f"IoU {' '.join(f'{v:.4f}' for v in metrics['iou'])}"
        if metrics is not None
        else "not validated"
    )
    return (f"epoch {epoch + 1}/{end_epoch}: loss {stats['loss']:.4f}, lr {stats['lr']:.3g}, "
            f"{stats['seconds']:.1f} s | {val}")


def _loader_options(cfg, info: DistInfo) -> dict:
    """DataLoader worker and memory options every loader of a run shares."""
    workers = cfg.WORKERS
    return dict(
        num_workers=workers,
        pin_memory=cfg.PIN_MEMORY and info.device.type == "cuda",
        # persistent workers keep their RNG across epochs, which an exact resume cannot replay
        persistent_workers=workers > 0 and cfg.TRAIN.PERSISTENT_WORKERS and not cfg.DETERMINISTIC,
        worker_init_fn=limit_worker_threads,
    )


def make_loader(cfg, dataset, info: DistInfo, *, train: bool, epoch_seed: int = 0) -> DataLoader:
    """Training: DistributedSampler (shuffle, drop_last batches); evaluation: unpadded shards."""
    common = _loader_options(cfg, info)
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


@dataclass(frozen=True)
class StepSettings:
    """How each training step runs: autocast `amp` (TRAIN.AMP), `channels_last` inputs
    (MODEL.CHANNELS_LAST), the layers kept `freeze`-n (TRAIN.FREEZE_LAYERS while the epoch is
    below TRAIN.FREEZE_EPOCHS), and the loss check / log every `print_freq` iterations."""

    amp: str = ""
    channels_last: bool = False
    freeze: tuple[str, ...] = ()
    print_freq: int = 20

    @classmethod
    def from_cfg(cls, cfg, epoch: int) -> StepSettings:
        frozen = [s.strip() for s in cfg.TRAIN.FREEZE_LAYERS.split(",") if s.strip()]
        return cls(amp=cfg.TRAIN.AMP, channels_last=cfg.MODEL.CHANNELS_LAST,
                   freeze=tuple(frozen) if epoch < cfg.TRAIN.FREEZE_EPOCHS else (),
                   print_freq=cfg.PRINT_FREQ)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader,
    *,
    epoch: int,
    schedule: PolySchedule,
    first_iter: int,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    step: StepSettings | None = None,
    writer=None,
    **fields,
) -> dict:
    """One pass over `loader`; iteration i uses the lr `schedule` gives iteration first_iter + i,
    each step as `step` says (or, without it, `StepSettings(**fields)`: amp=..., freeze=...).

    Returns {"loss": mean loss over ranks and iterations, "lr": last lr, "seconds": wall time}.
    Raises NonFiniteLossError naming the epoch and iteration when any rank's loss is NaN/inf.
    """
    step = grouped(StepSettings, step, fields)
    amp, channels_last, freeze, print_freq = (step.amp, step.channels_last, step.freeze,
                                              step.print_freq)
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
    total, lr, start = 0.0, schedule.base_lr, time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}",
        disable=not is_main_process(),
        dynamic_ncols=True,
        leave=False,
    )
    for i, (images, labels, _, _) in enumerate(bar):
        it = first_iter + i
        lr = schedule.step(optimizer, it)
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
def _windowed_outputs(net: nn.Module, images: torch.Tensor, window: tuple[int, int],
                      amp_dtype, align_corners: bool) -> list[torch.Tensor]:
    """Every output of `net` for `images` (N, 3, H, W) at (N, C, H, W), computed window by
    window (the official grid of `sliding_windows`) and averaged where windows overlap."""
    height, width = images.shape[-2:]
    sums: list[torch.Tensor] = []
    count = torch.zeros(1, 1, height, width, device=images.device)
    for h0, h1, w0, w1 in sliding_windows(height, width, *window):
        with autocast(images.device, amp_dtype):
            outs = net(images[..., h0:h1, w0:w1])
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        if not sums:
            sums = [images.new_zeros(len(images), o.shape[1], height, width) for o in outs]
        for total, out in zip(sums, outs):
            total[..., h0:h1, w0:w1] += F.interpolate(
                out.float(), size=(h1 - h0, w1 - w0), mode="bilinear", align_corners=align_corners
            )
        count[..., h0:h1, w0:w1] += 1
    return [total / count for total in sums]


@dataclass(frozen=True)
class ValidationSettings:
    """How `validate` runs: `num_classes`, `ignore_label` (TRAIN.IGNORE_LABEL), align_corners,
    channels_last (MODEL.*), amp (TEST.AMP) and `window` (TEST.VAL_WINDOW, [w, h]: an image
    larger than it goes through the network in windows of that size, the official sliding
    grid, overlaps averaged, each output resized to its window, so that whole 5472x3078 photos
    validate on small GPUs; an image that fits one window is validated whole, exactly as
    without it)."""

    num_classes: int
    ignore_label: int
    align_corners: bool = True
    amp: str = ""
    channels_last: bool = False
    window: tuple[int, int] = (0, 0)

    @classmethod
    def from_cfg(cls, cfg) -> ValidationSettings:
        return cls(num_classes=cfg.DATASET.NUM_CLASSES, ignore_label=cfg.TRAIN.IGNORE_LABEL,
                   align_corners=cfg.MODEL.ALIGN_CORNERS, amp=cfg.TEST.AMP,
                   channels_last=cfg.MODEL.CHANNELS_LAST, window=tuple(cfg.TEST.VAL_WINDOW))


def validate(
    model: nn.Module,
    criterion: nn.Module,
    loader,
    settings: ValidationSettings | None = None,
    *,
    device: torch.device,
    epoch: int = 0,
    wire_metrics: WireMetrics | None = None,
    writer=None,
    palette: Sequence[Sequence[int]] | None = None,
    num_images: int = 3,
    **fields,
) -> dict:
    """Single-scale validation on whole images, as the official `validate`, with `settings`
    (or, without them, `ValidationSettings(**fields)`: num_classes=..., ignore_label=..., ...).

    Under torch.distributed each rank runs its shard (use an unpadded sampler such as
    ShardSampler) and the confusion matrices and loss sums are added across ranks, so any number
    of processes reports the same numbers. Returns the main (last) output's metrics
    (miou, iou, pixel_acc, mean_acc), `loss`, and `miou_per_output` for every model output;
    with `wire_metrics`, "wire" (tolerant wire scores). With `writer`, the scores at `epoch`
    and the first `num_images` predictions in `palette` colours go to TensorBoard.
    """
    settings = grouped(ValidationSettings, settings, fields)
    num_classes, ignore_label = settings.num_classes, settings.ignore_label
    align_corners, window = settings.align_corners, settings.window
    net = unwrap(model)  # no DDP in eval: ranks may run different numbers of batches
    net.eval()
    amp_dtype = autocast_dtype(settings.amp, device, "TEST.AMP")
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    matrices: list[ConfusionMatrix] = []
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of loss * n, n)
    for b, (images, labels, _, _) in enumerate(
        tqdm(
            loader, desc="validate", disable=not is_main_process(), dynamic_ncols=True, leave=False
        )
    ):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True).long()
        win_w, win_h = window
        if win_w and (images.shape[-1] > win_w or images.shape[-2] > win_h):
            outputs = _windowed_outputs(net, images, (win_h, win_w), amp_dtype, align_corners)
        else:
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

"""torch.distributed set-up from the torchrun environment, and the one place for collectives.

torchrun (and the legacy `torch.distributed.launch`) set RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT; LOCAL_RANK comes from the environment or, for the legacy launcher without
`--use-env`, from its `--local_rank` / `--local-rank` argument. Backend: NCCL on CUDA, gloo on CPU.
A process started by a launcher joins a process group even when it is the only one (as the
official code does), so a one-GPU torchrun run goes through NCCL, DDP and SyncBatchNorm too.

Collectives: every `all_reduce` / `broadcast` / `all_gather` / `barrier` of this project goes
through the functions below. They put a tensor on the device the backend works on (the current
CUDA device for NCCL, the CPU for gloo) and copy the result back into the caller's tensor, so
callers keep their tensors where they like (CPU counters, CUDA confusion matrices). Without a
process group they do nothing. Every rank must make the same calls in the same order: code that
reduces must not branch on what one rank's shard holds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)

_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}


class DistributedSetupError(RuntimeError):
    """The processes of a run disagree or cannot run (device, checkpoint): one line says why."""


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    launched: bool = False  # started by torchrun / launch: a process group exists
    backend: str = ""  # nccl | gloo | "" (no process group)

    def describe(self) -> str:
        """One line for the start-up log: rank, device (and which GPU), process group."""
        device = str(self.device)
        if self.device.type == "cuda":
            device += (
                f" ({torch.cuda.get_device_name(self.device)}, {torch.cuda.device_count()} "
                f"visible, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')})"
            )
        group = f"process group: backend {self.backend}" if self.backend else "no process group"
        return (
            f"rank {self.rank} of {self.world_size} (local rank {self.local_rank}) on {device}; "
            f"{group}"
        )

    @property
    def distributed(self) -> bool:
        """A process group is in use (any number of processes started by a launcher)."""
        return self.launched or self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# what a surviving process's collective raises when another process of the run has died: only
# phrases that say the other end went away (a rank's own NCCL error or timeout names its cause)
_PEER_GONE = ("connection closed by peer", "connection reset by peer", "broken pipe",
              "remote process exited", "communicator was aborted")


def peer_failed(err: BaseException) -> bool:
    """Whether `err` is a collective failing because another process of the run stopped (gloo
    "Connection closed by peer", NCCL aborts): that process's own error is the cause."""
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(p in text for p in _PEER_GONE)


def choose_cuda_index(local_rank: int, device_count: int, local_world_size: int = 1) -> int:
    """The CUDA device index for this process.

    LOCAL_RANK when that many devices are visible; device 0 when the launcher (SLURM-style)
    makes one GPU visible per process; otherwise a one-line DistributedSetupError, also when
    the launcher started several processes on this node (LOCAL_WORLD_SIZE) that all see the
    same single GPU (NCCL cannot give two ranks one GPU).
    """
    if device_count < 1:
        raise DistributedSetupError("no CUDA device is visible to this process")
    if device_count == 1 and local_world_size > 1:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
        raise DistributedSetupError(
            f"{local_world_size} processes on this node but each sees the same single GPU "
            f"(CUDA_VISIBLE_DEVICES={visible}): NCCL cannot share one GPU between ranks; start "
            "--nproc_per_node=1, make a different GPU visible to each process, or use the CPU "
            "(--device cpu for predict)"
        )
    if 0 <= local_rank < device_count:
        return local_rank
    if device_count == 1:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)")
    raise DistributedSetupError(
        f"LOCAL_RANK {local_rank} but only {device_count} CUDA devices are visible "
        f"(CUDA_VISIBLE_DEVICES={visible}); start at most {device_count} processes per node "
        "or make one GPU visible to each process"
    )


def _launched() -> bool:
    """Started by torchrun / torch.distributed.launch (or any launcher that sets these)."""
    return "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def check_not_bare_slurm() -> None:
    """`srun -n N python tools/train.py` without torchrun starts N independent runs that share
    one OUTPUT_DIR and remove each other's temporary files: refused in one line."""
    tasks = os.environ.get("SLURM_STEP_NUM_TASKS", "1")  # set by srun for the tasks of a step
    if ("WORLD_SIZE" not in os.environ and "SLURM_PROCID" in os.environ and tasks.isdigit()
            and int(tasks) > 1):
        raise DistributedSetupError(
            f"SLURM started {tasks} tasks without a launcher: each would run alone into the same "
            "OUTPUT_DIR; run one task per node with torchrun (srun -n <nodes> torchrun "
            "--nproc_per_node=N ...)"
        )


def init_distributed(
    local_rank: int | None = None, use_cuda: bool | None = None, cuda_index: int | None = None
) -> DistInfo:
    """Join the process group when started by a launcher and pick this process's device.

    `use_cuda` defaults to "a GPU is present". The GPU is LOCAL_RANK, or the only visible one
    when each process sees one GPU (see `choose_cuda_index`); the choice is logged. A process
    not started by a launcher uses `cuda_index` when given (`--device cuda:N`).
    """
    check_not_bare_slurm()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(
        os.environ.get(
            "LOCAL_RANK", local_rank if local_rank is not None and local_rank >= 0 else 0
        )
    )
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    launched = world_size > 1 or _launched()
    if use_cuda:
        count = torch.cuda.device_count()
        if cuda_index is not None and not launched:
            index = cuda_index
        else:
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if launched else 1
            index = choose_cuda_index(local_rank, count, local_world)
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
    else:
        device = torch.device("cpu")
    backend = ""
    if launched:
        if not dist.is_initialized():
            kwargs = {"device_id": device} if use_cuda else {}
            dist.init_process_group(
                backend="nccl" if use_cuda else "gloo", init_method="env://", **kwargs
            )
        backend = str(dist.get_backend())
    info = DistInfo(rank, world_size, local_rank, device, launched, backend)
    logger.info("%s", info.describe())
    return info


def cleanup() -> None:
    global _HOST_GROUP
    _HOST_GROUP = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# How long a rank waits for the slowest one at the end of a campaign (predict's merge): photos
# are dealt out ahead, so a node with slower storage may finish hours after the others; the
# default group's timeout (NCCL: 10 minutes) would kill the run before the merged files exist.
HOST_TIMEOUT = timedelta(hours=24)
_HOST_GROUP = None


def host_group():
    """A gloo group of every rank with HOST_TIMEOUT, for waiting on the slowest rank and for
    small Python objects exchanged on the host, whatever the default group's backend and
    timeout. Created on first use, which every rank must reach in the same order; None
    without a process group."""
    global _HOST_GROUP
    if not initialized():
        return None
    if _HOST_GROUP is None:
        _HOST_GROUP = dist.new_group(backend="gloo", timeout=HOST_TIMEOUT)
    return _HOST_GROUP


def wait_for_all_ranks() -> None:
    """A barrier on the host group (HOST_TIMEOUT); nothing without a process group."""
    group = host_group()
    if group is not None:
        dist.barrier(group=group)


def gather_to_main(obj) -> list | None:
    """[obj of rank 0, obj of rank 1, ...] on rank 0 and None elsewhere, over the host group
    (HOST_TIMEOUT); [obj] without a process group."""
    group = host_group()
    if group is None:
        return [obj]
    out = [None] * get_world_size() if get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0, group=group)
    return out


def broadcast_from_main(obj):
    """Rank 0's picklable `obj` on every rank over the host group (no GPU copy, HOST_TIMEOUT)."""
    group = host_group()
    if group is None:
        return obj
    box = [obj if get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def initialized() -> bool:
    """A process group exists: collectives run (also with one process)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def collective_device() -> torch.device:
    """Where the backend wants tensors: the current CUDA device for NCCL, else the CPU."""
    if str(dist.get_backend()).lower() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` itself when already on `device`, else a copy there."""
    return tensor if tensor.device == device else tensor.to(device)


def _in_place(tensor: torch.Tensor, collective) -> torch.Tensor:
    """Run `collective(work)` on `tensor` or its copy on the backend's device, the result back
    in `tensor`; nothing without a process group."""
    if not initialized():
        return tensor
    work = _to(tensor, collective_device())
    collective(work)
    if work is not tensor:
        tensor.copy_(work)
    return tensor


def barrier() -> None:
    if initialized():
        if str(dist.get_backend()).lower() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce `tensor` over ranks in place (op: sum, max, min); returns it.

    The tensor may live on any device: it is copied to the backend's device and back.
    """
    if op not in _OPS:
        raise ValueError(f"all_reduce op {op!r}; known: {sorted(_OPS)}")
    return _in_place(tensor, lambda work: dist.all_reduce(work, op=getattr(dist.ReduceOp, _OPS[op])))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (identity without a process group)."""
    return all_reduce(tensor, "sum")


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank `src`'s values into `tensor` on every rank, in place; returns it."""
    return _in_place(tensor, lambda work: dist.broadcast(work, src))


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s picklable `obj` on every rank (`obj` itself without a process group)."""
    if not initialized():
        return obj
    box = [obj if get_rank() == src else None]
    dist.broadcast_object_list(box, src, device=collective_device())
    return box[0]


def all_gather_object(obj):
    """[obj of rank 0, obj of rank 1, ...] (a one-element list without a process group)."""
    if not initialized():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_tensor(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's `tensor` (same shape and dtype on all ranks), on `tensor`'s device."""
    if not initialized():
        return [tensor]
    work = _to(tensor, collective_device())
    out = [torch.empty_like(work) for _ in range(get_world_size())]
    dist.all_gather(out, work)
    return [t.to(tensor.device) for t in out]


def maybe_sync_batchnorm(model: nn.Module, info: DistInfo) -> nn.Module:
    """SyncBatchNorm only for distributed CUDA runs (it has no CPU kernel)."""
    if info.distributed and info.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel in a distributed run, the model itself otherwise."""
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None  # not LOCAL_RANK: see init
    return nn.parallel.DistributedDataParallel(
        model, device_ids=ids, output_device=ids[0] if ids else None
    )


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class ShardSampler(Sampler[int]):
    """Evaluation sampler: rank r takes samples r, r + W, r + 2W, ... without padding.

    DistributedSampler pads the last shard by repeating samples, which would count them twice
    in a confusion matrix; here every sample is seen exactly once across ranks.
    """

    def __init__(self, length: int, rank: int | None = None, world_size: int | None = None):
        self.length = length
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size

    def __iter__(self):
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


class MixSampler(Sampler[int]):
    """Training sampler over ``ConcatDataset([own, mixed])``: each epoch holds every one of the
    `own` samples once and `per_epoch` samples of the `mixed` set (drawn without repetition,
    cycling through it over the epochs' draws), shuffled. Rank r takes every W-th index of the
    epoch's list, cut to equal shards (the drop_last of DistributedSampler). The order depends
    only on `seed` and the epoch (`set_epoch`), so a resumed run draws what it would have.
    """

    def __init__(self, own: int, mixed: int, per_epoch: int, seed: int, *, shuffle: bool = True,
                 rank: int | None = None, world_size: int | None = None):
        self.own, self.mixed, self.per_epoch = int(own), int(mixed), int(per_epoch)
        self.seed, self.shuffle, self.epoch = int(seed), bool(shuffle), 0
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        rounds = -(-self.per_epoch // self.mixed) if self.per_epoch else 0
        picks = [torch.randperm(self.mixed, generator=generator) for _ in range(rounds)]
        return torch.cat(picks)[: self.per_epoch] if picks else torch.zeros(0, dtype=torch.long)

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.cat([torch.arange(self.own), self.own + self._draw(generator)])
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=generator)]
        total = len(order) // self.world_size * self.world_size
        return iter(order[self.rank : total : self.world_size].tolist())

    def __len__(self) -> int:
        return (self.own + self.per_epoch) // self.world_size

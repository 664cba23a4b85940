"""torch.distributed set-up from the torchrun environment, and small rank helpers.

torchrun (and the legacy `torch.distributed.launch`) set RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT; LOCAL_RANK comes from the environment or, for the legacy launcher without
`--use-env`, from its `--local_rank` / `--local-rank` argument. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(local_rank: int | None = None, use_cuda: bool | None = None) -> DistInfo:
    """Join the process group when WORLD_SIZE > 1 and pick this process's device.

    `use_cuda` defaults to "a GPU is present"; each process takes GPU LOCAL_RANK.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(
        os.environ.get(
            "LOCAL_RANK", local_rank if local_rank is not None and local_rank >= 0 else 0
        )
    )
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        kwargs = {"device_id": device} if use_cuda else {}
        dist.init_process_group(backend=backend, init_method="env://", **kwargs)
        logger.info("process group: backend %s, rank %d of %d", backend, rank, world_size)
    return DistInfo(rank, world_size, local_rank, device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (identity in a single process)."""
    if get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def all_gather_object(obj):
    """[obj of rank 0, obj of rank 1, ...] (a one-element list in a single process)."""
    if get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def maybe_sync_batchnorm(model: nn.Module, info: DistInfo) -> nn.Module:
    """SyncBatchNorm only for distributed CUDA runs (it has no CPU kernel)."""
    if info.distributed and info.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel in a distributed run, the model itself otherwise."""
    if not info.distributed:
        return model
    ids = [info.local_rank] if info.device.type == "cuda" else None
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

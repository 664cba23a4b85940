"""lib/utils/distributed: one place for collectives, devices per process, resume decided once.

The NCCL rules (CUDA tensors only) are checked here with the backend mocked; the real NCCL
runs are in tests/gpu. Process groups of two CPU processes (gloo) run the same helpers for real.
"""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lib.core.metrics import ConfusionMatrix
from lib.core.training import decide_resume
from lib.core.wire_metrics import WireMetrics
from lib.utils import distributed as du

REPO = Path(__file__).resolve().parents[2]
COLLECTIVES = (
    "all_reduce|all_gather|all_gather_object|all_gather_into_tensor|broadcast|"
    "broadcast_object_list|barrier|reduce|reduce_scatter|gather|scatter|all_to_all|send|recv"
)


class FakeGroup:
    """What a 2-process group looks like from one rank: every rank holds the same values."""

    def __init__(self, monkeypatch, backend: str):
        self.moved_to: list[torch.device] = []
        self.reduced: list[torch.Tensor] = []
        monkeypatch.setattr(du.dist, "is_available", lambda: True)
        monkeypatch.setattr(du.dist, "is_initialized", lambda: True)
        monkeypatch.setattr(du.dist, "get_backend", lambda group=None: backend)
        monkeypatch.setattr(du.dist, "get_world_size", lambda group=None: 2)
        monkeypatch.setattr(du.dist, "get_rank", lambda group=None: 0)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        real_to = du._to

        def to(tensor, device):
            if device.type == "cuda":  # no GPU here: stand in for the copy to the GPU
                self.moved_to.append(device)
                return tensor.clone()
            return real_to(tensor, device)

        def all_reduce(tensor, op=None):
            self.reduced.append(tensor)
            tensor.mul_(2)  # two ranks with equal values

        monkeypatch.setattr(du, "_to", to)
        monkeypatch.setattr(du.dist, "all_reduce", all_reduce)


def test_nccl_gets_a_cuda_copy_and_the_result_comes_back(monkeypatch):
    group = FakeGroup(monkeypatch, "nccl")
    counts = torch.tensor([1, 2, 3])  # e.g. WireMetrics.counts, a CPU tensor
    out = du.all_reduce_sum(counts)
    assert group.moved_to == [torch.device("cuda", 0)]
    assert group.reduced[0] is not counts  # NCCL saw the GPU copy, never the CPU tensor
    assert out is counts and counts.device.type == "cpu" and counts.tolist() == [2, 4, 6]


def test_gloo_reduces_cpu_tensors_in_place(monkeypatch):
    group = FakeGroup(monkeypatch, "gloo")
    counts = torch.tensor([1, 2, 3])
    du.all_reduce_sum(counts)
    assert group.moved_to == [] and group.reduced[0] is counts
    assert counts.tolist() == [2, 4, 6]


def test_metrics_reduce_through_the_helper(monkeypatch):

    group = FakeGroup(monkeypatch, "nccl")
    wire = WireMetrics()
    wire.counts += 1
    wire.reduce_from_all_processes()
    cm = ConfusionMatrix(2)
    cm.mat += 1
    cm.reduce_from_all_processes()
    assert len(group.moved_to) == 2 and all(t is not wire.counts for t in group.reduced)
    assert wire.counts.tolist() == [2] * 8 and cm.mat.tolist() == [[2, 2], [2, 2]]


def test_no_process_group_means_no_collective():
    t = torch.tensor([1.0])
    assert du.all_reduce_sum(t) is t and t.item() == 1.0
    assert du.broadcast_object(5) == 5 and du.all_gather_object(5) == [5]
    du.barrier()


def test_only_the_distributed_module_calls_collectives():
    pattern = re.compile(
        rf"(?:\bdist|torch\.distributed)\s*\.\s*(?:{COLLECTIVES})\s*\(", re.MULTILINE
    )
    offenders = []
    for folder in ("lib", "tools", "tools_jss"):
        for path in (REPO / folder).rglob("*.py"):
            if path == REPO / "lib" / "utils" / "distributed.py":
                continue
            for m in pattern.finditer(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(REPO)}: {m.group(0)}")
    assert offenders == []


def test_cuda_index_per_process():
    assert du.choose_cuda_index(1, 4) == 1
    assert du.choose_cuda_index(3, 1) == 0  # one visible GPU per process (SLURM style)
    with pytest.raises(du.DistributedSetupError, match="LOCAL_RANK 3 but only 2 CUDA devices"):
        du.choose_cuda_index(3, 2)
    with pytest.raises(du.DistributedSetupError, match="no CUDA device"):
        du.choose_cuda_index(0, 0)


def test_init_distributed_takes_the_one_visible_gpu_and_says_so(monkeypatch, caplog):
    chosen = []
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "Fake GPU")
    with caplog.at_level(logging.INFO):
        info = du.init_distributed(use_cuda=True)
    assert chosen == [0] and info.device == torch.device("cuda", 0) and info.local_rank == 3
    assert "(local rank 3) on cuda:0 (Fake GPU, 1 visible" in caplog.text
    assert not info.distributed  # not started by a launcher: no process group


def test_several_processes_on_one_visible_gpu_are_refused_in_one_line(monkeypatch):
    assert du.choose_cuda_index(0, 1, local_world_size=1) == 0
    with pytest.raises(du.DistributedSetupError, match="2 processes on this node but each sees "
                       "the same single GPU") as err:
        du.choose_cuda_index(1, 1, local_world_size=2)
    assert "\n" not in str(err.value)
    # as torchrun starts them: refused before NCCL is asked
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(du.dist, "init_process_group", lambda **k: pytest.fail("NCCL was asked"))
    with pytest.raises(du.DistributedSetupError, match="NCCL cannot share one GPU"):
        du.init_distributed(use_cuda=True)


def test_a_plain_process_uses_the_gpu_device_names(monkeypatch):
    chosen = []
    for key in ("WORLD_SIZE", "LOCAL_RANK", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: "Fake GPU")
    info = du.init_distributed(use_cuda=True, cuda_index=1)  # predict --device cuda:1
    assert chosen == [1] and info.device == torch.device("cuda", 1)
    chosen.clear()
    assert du.init_distributed(use_cuda=True).device == torch.device("cuda", 0) and chosen == [0]


def test_ddp_device_ids_follow_the_chosen_gpu(monkeypatch):
    seen = {}

    class FakeDDP(torch.nn.Module):
        def __init__(self, module, device_ids=None, output_device=None):
            super().__init__()
            seen.update(device_ids=device_ids, output_device=output_device)

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", FakeDDP)
    info = du.DistInfo(rank=3, world_size=4, local_rank=3, device=torch.device("cuda", 0))
    du.wrap_ddp(torch.nn.Linear(1, 1), info)
    assert seen == {"device_ids": [0], "output_device": 0}


def test_launched_single_process_uses_a_process_group(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MASTER_PORT", str(port))
    info = du.init_distributed(use_cuda=False)
    try:
        assert info.distributed and du.initialized() and du.get_world_size() == 1
        assert du.all_reduce_sum(torch.tensor([3])).item() == 3  # a real gloo collective
    finally:
        du.cleanup()


# --- two real processes (gloo) ---------------------------------------------------------------


def _resume_worker(rank: int, store: str, folder: str, result_dir: str) -> None:

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    info = du.DistInfo(rank, 2, rank, torch.device("cpu"), launched=True)
    answers = []
    # who sees a checkpoint: both ranks, only rank 0, only rank 1
    for case, visible in (("both", {0, 1}), ("rank0", {0}), ("rank1", {1})):
        path = Path(folder) / f"{case}_rank{rank}" / "checkpoint.pth.tar"
        if rank in visible:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
        try:
            answers.append(str(decide_resume(path, True, info)))
        except du.DistributedSetupError as err:
            answers.append(f"error: {err}")
    dist.destroy_process_group()
    (Path(result_dir) / f"rank{rank}.txt").write_text("\n".join(answers))


def test_resume_is_decided_by_rank_zero_for_every_rank(tmp_path):
    mp.spawn(
        _resume_worker,
        args=(str(tmp_path / "store"), str(tmp_path / "ckpt"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    r0 = (tmp_path / "rank0.txt").read_text().splitlines()
    r1 = (tmp_path / "rank1.txt").read_text().splitlines()
    assert r0[0] == r1[0] == "True"
    # rank 0 resumes, rank 1 cannot see the file: both stop with the same line naming rank 1
    assert r0[1] == r1[1] and r0[1].startswith("error: rank 0 resumes from")
    assert "rank(s) 1 cannot see that file" in r0[1]
    # rank 0 sees nothing: nobody resumes, though rank 1 has a file
    assert r0[2] == r1[2] == "False"


def test_mix_sampler_holds_every_own_sample_and_a_share_of_the_mixed_set():
    from lib.utils.distributed import MixSampler

    sampler = MixSampler(10, 4, 5, seed=7, world_size=1, rank=0)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == 15
        assert sorted(i for i in order if i < 10) == list(range(10))  # each own sample once
        mixed = [i for i in order if i >= 10]
        assert len(mixed) == 5 and all(10 <= i < 14 for i in mixed)
        assert len(set(mixed)) == 4  # 5 from 4: every mixed sample before any repeats
        epochs.append(order)
    assert epochs[0] != epochs[1]
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]  # the epoch decides the order: a resume replays it
    # two ranks: disjoint, equal shards of the same epoch list
    ranks = [MixSampler(10, 4, 5, seed=7, rank=r, world_size=2) for r in (0, 1)]
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == 7
    assert sorted(shards[0] + shards[1]) == sorted(epochs[0][:14])

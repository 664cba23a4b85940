"""CUDA paths: NCCL collectives, SyncBatchNorm, AMP fp16 + GradScaler, bf16, channels_last.

Run on a machine with a GPU: `python -m pytest -m gpu tests/gpu` (and `python tools/gpu_smoke.py`
for the tools end to end). Without CUDA every test here is skipped with the reason. A one-GPU
machine cannot start two NCCL ranks, so the collectives run in a one-process NCCL group: the
backend's device rules (CUDA tensors only) are the same as with eight.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.distributed as dist
from torch import nn

from lib.config import get_config
from lib.core.metrics import ConfusionMatrix
from lib.core.training import train_one_epoch, validate
from lib.core.wire_metrics import WireMetrics
from lib.models import get_seg_model
from lib.models.bn_folding import count_batchnorms, fold_batchnorm
from lib.models.summary import count_gflops
from lib.utils import distributed as du
from lib.utils.amp import autocast_dtype, bf16_supported, grad_scaler
from lib.utils.optim import PolySchedule
from tests.tools.conftest import DEMO_CFG

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = torch.device("cuda", 0)


class TinySeg(nn.Module):
    """Two outputs (aux, main) like OCR; BatchNorm for SyncBN and folding."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.aux = nn.Conv2d(8, 2, 1)
        self.head = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.cls = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        f = torch.relu(self.stem(x))
        return [self.aux(f), self.cls(self.head(f))]


def batches(n=4, size=32, batch=2):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        labels = torch.zeros(batch, size, size, dtype=torch.long)
        labels[:, :, size // 2 - 1 : size // 2 + 1] = 1  # a vertical wire
        out.append((torch.randn(batch, 3, size, size, generator=g), labels, None, None))
    return out


class CE(nn.Module):
    def forward(self, outputs, labels):
        outputs = outputs if isinstance(outputs, list) else [outputs]
        return sum(nn.functional.cross_entropy(o.float(), labels) for o in outputs)


@pytest.fixture()
def nccl_group(tmp_path):
    """A one-process NCCL process group (what torchrun --nproc_per_node=1 gives)."""
    torch.cuda.set_device(0)
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1, device_id=CUDA)
    yield
    dist.destroy_process_group()


def test_raw_nccl_refuses_cpu_tensors_but_the_helper_does_not(nccl_group):
    # the defect: WireMetrics.counts is a CPU tensor, and NCCL reduces CUDA tensors only
    with pytest.raises((RuntimeError, ValueError)):
        dist.all_reduce(torch.ones(3))
    counts = torch.arange(3)
    assert du.all_reduce_sum(counts) is counts and counts.device.type == "cpu"
    assert counts.tolist() == [0, 1, 2]
    assert du.collective_device() == CUDA
    assert du.all_reduce(torch.tensor([2.0, 5.0]), "max").tolist() == [2.0, 5.0]
    assert du.broadcast_object({"epoch": 3}) == {"epoch": 3}
    assert du.all_gather_object("rank0") == ["rank0"]
    gathered = du.all_gather_tensor(torch.tensor([1, 2]))
    assert [t.tolist() for t in gathered] == [[1, 2]] and gathered[0].device.type == "cpu"
    du.barrier()


def test_wire_metrics_and_confusion_matrices_reduce_over_nccl(nccl_group):
    wire = WireMetrics()
    pred = torch.zeros(40, 40, dtype=torch.long)
    pred[:, 20] = 1
    wire.update(pred, pred)
    before = wire.compute()
    wire.reduce_from_all_processes()  # crashed here before: CPU counts into NCCL
    assert wire.counts.device.type == "cpu" and wire.compute() == before
    for device in ("cpu", CUDA):
        cm = ConfusionMatrix(2, 255, device)
        cm.update(pred, pred)
        cm.reduce_from_all_processes()
        assert cm.mat.device.type == torch.device(device).type
        assert cm.compute()["miou"] == 1.0


def test_validate_under_nccl_equals_a_plain_process(tmp_path):
    torch.manual_seed(0)
    model = TinySeg().to(CUDA).eval()
    kw = dict(num_classes=2, ignore_label=255, device=CUDA, align_corners=False)
    plain = validate(model, CE(), batches(), wire_metrics=WireMetrics(), **kw)
    torch.cuda.set_device(0)
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1, device_id=CUDA)
    try:
        grouped = validate(model, CE(), batches(), wire_metrics=WireMetrics(), **kw)
        empty = validate(model, CE(), [], wire_metrics=WireMetrics(), **kw)  # an empty shard
    finally:
        dist.destroy_process_group()
    assert grouped["confusion_matrix"] == plain["confusion_matrix"]
    assert grouped["wire"] == plain["wire"] and grouped["loss"] == pytest.approx(plain["loss"])
    assert len(empty["miou_per_output"]) == 1


def _count_syncs(print_freq: int, iterations: int = 8) -> int:
    torch.manual_seed(0)
    model = TinySeg().to(CUDA)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for g in opt.param_groups:
        g["initial_lr"] = 0.01
    loader = [(x.to(CUDA), y.to(CUDA), n, m) for x, y, n, m in batches(iterations)]
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_one_epoch(model, CE(), opt, loader, epoch=0, schedule=PolySchedule(0.01, 100), first_iter=1, device=CUDA, scaler=grad_scaler("", CUDA),
                            print_freq=print_freq)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in seen)


def test_training_steps_do_not_sync_the_host_between_checks():
    every_step = _count_syncs(print_freq=1)
    sparse = _count_syncs(print_freq=1000)  # checks only at the last iteration
    assert sparse < every_step
    assert sparse <= 2, f"{sparse} host syncs in 8 iterations with one check"


def test_bf16_is_native_or_falls_back_to_fp32():
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    assert bf16_supported(CUDA) == native
    assert autocast_dtype("bf16", CUDA) == (torch.bfloat16 if native else None)


def test_fp16_gradscaler_syncbn_ddp_channels_last_train(nccl_group):
    torch.manual_seed(0)
    info = du.DistInfo(0, 1, 0, CUDA, launched=True)
    model = du.maybe_sync_batchnorm(TinySeg(), info).to(CUDA)
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) == 2
    model = model.to(memory_format=torch.channels_last)
    ddp = du.wrap_ddp(model, info)
    assert isinstance(ddp, nn.parallel.DistributedDataParallel)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for g in opt.param_groups:
        g["initial_lr"] = 0.01
    scaler = grad_scaler("fp16", CUDA)
    assert scaler.is_enabled()
    before = model.stem[0].weight.detach().clone()
    stats = train_one_epoch(ddp, CE(), opt, batches(), epoch=0, schedule=PolySchedule(0.01, 10), first_iter=0, device=CUDA, scaler=scaler, amp="fp16",
                            channels_last=True, print_freq=2)
    assert torch.isfinite(torch.tensor(stats["loss"]))
    assert not torch.equal(before, model.stem[0].weight.detach())
    # the trained SyncBN model folds like a BatchNorm2d one
    model.eval()
    x = torch.randn(2, 3, 32, 32, device=CUDA)
    with torch.no_grad():
        expected = model(x)[1]
        fold_batchnorm(model)
        got = model(x)[1]
    assert count_batchnorms(model) == 0
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_flop_count_allocates_no_gpu_memory():

    model = get_seg_model(get_config(DEMO_CFG)).to(CUDA)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    gflops = count_gflops(model, 1024, 2048)
    assert gflops > 10
    assert torch.cuda.max_memory_allocated() - base < 2**20  # a real forward needs GBs


def test_one_visible_gpu_serves_any_local_rank(monkeypatch):
    # SLURM-style: each process sees one GPU, LOCAL_RANK may be 3
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count() + 2))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    info = du.init_distributed(use_cuda=True)
    assert info.device == torch.device("cuda", 0)
    assert torch.cuda.current_device() == 0


def test_ohem_loss_does_not_sync_the_host():
    from lib.core.criterion import OhemCrossEntropy

    score = torch.randn(2, 3, 64, 64, device=CUDA, requires_grad=True)
    target = torch.randint(0, 3, (2, 64, 64), device=CUDA)
    target[:, :8] = 255
    crit = OhemCrossEntropy(255, [1.0], thresh=0.7, min_kept=1000).to(CUDA)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            loss = crit.ohem(score, target)
            loss.backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert not [w for w in seen if "synchroniz" in str(w.message)]
    assert torch.isfinite(loss).item()

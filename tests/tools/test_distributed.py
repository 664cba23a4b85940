"""torchrun with 2 CPU processes (gloo): training, checkpoints, and rank-independent metrics."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import torch
from torch.utils.data import DataLoader

from lib.config import get_config
from lib.core.criterion import build_criterion
from lib.core.training import validate
from lib.core.wire_metrics import WireMetrics
from lib.datasets import build_dataset
from lib.datasets.lists import parse_line
from lib.models import get_seg_model, load_weights
from lib.utils.checkpoint import load_file
from lib.utils.distributed import ShardSampler
from tests.tools.conftest import DEMO_CFG, REPO, tiny_opts


def test_shard_sampler_sees_every_sample_once():
    shards = [list(ShardSampler(7, r, 2)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(7))
    assert [len(ShardSampler(7, r, 3)) for r in range(3)] == [3, 2, 2]


def test_torchrun_two_processes_train_and_validate_like_one(tiny_data, tmp_path):
    opts = tiny_opts(tiny_data, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(REPO / "tools" / "train.py"),
        "--cfg",
        str(DEMO_CFG),
        *opts,
    ]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "output" / "daodixian_seg" / DEMO_CFG.stem
    for name in ("checkpoint.pth.tar", "best.pth", "final_state.pth"):
        assert (out / name).is_file(), name
    ckpt = load_file(out / "checkpoint.pth.tar")
    assert ckpt["epoch"] == 2 and len(ckpt["rng"]) == 2
    assert all(k.startswith(("model.", "loss.")) for k in ckpt["state_dict"])

    # the same weights validated by one process give exactly the 2-process confusion matrix

    cfg = get_config(DEMO_CFG, opts)
    model = get_seg_model(cfg)
    load_weights(model, out / "final_state.pth", strict=True)
    val = build_dataset(cfg, "val")
    assert len(val) == 3  # odd: a padded sampler would count one image twice
    loader = DataLoader(val, batch_size=1, sampler=ShardSampler(len(val), 0, 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = validate(
            model,
            build_criterion(cfg, val.class_weights),
            loader,
            num_classes=2,
            ignore_label=255,
            device=torch.device("cpu"),
            wire_metrics=WireMetrics(),
        )
    finally:
        torch.set_num_threads(threads)
    assert one["confusion_matrix"] == ckpt["metrics"]["confusion_matrix"]
    assert one["miou"] == ckpt["metrics"]["miou"]
    assert one["wire"] == ckpt["metrics"]["wire"]  # wire counts summed over the two ranks
    total = sum(sum(row) for row in one["confusion_matrix"])
    assert total == 3 * 96 * 128 - sum(int((val[i][1] == 255).sum()) for i in range(3))

    # resumed by two processes with a 1-photo validation set: rank 1's shard is empty, and
    # both ranks must still make the same collective calls (this hung before)
    opts1 = tiny_opts(tiny_data, tmp_path, "TRAIN.END_EPOCH", "3", "TRAIN.RESUME", "True",
                      "TEST.NUM_SAMPLES", "1")
    run = subprocess.run([*cmd[:-len(opts)], *opts1], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("resumed from") == 1  # decided by rank 0, logged once
    ckpt3 = load_file(out / "checkpoint.pth.tar")
    assert ckpt3["epoch"] == 3
    pixels = sum(sum(row) for row in ckpt3["metrics"]["confusion_matrix"])
    assert pixels == 96 * 128 - int((val[0][1] == 255).sum())  # exactly the one photo

    # pick_threshold on two processes counts the photos of both shards (2 + 1), not rank 0's
    pick = [*cmd[:-len(opts) - 3], str(REPO / "tools" / "pick_threshold.py"), "--cfg",
            str(DEMO_CFG), *opts, "TEST.MODEL_FILE", str(out / "final_state.pth")]
    run = subprocess.run(pick, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "on 3 photos) written to" in run.stdout


def test_torchrun_a_bad_photo_is_named_by_the_rank_that_read_it(tiny_data, tmp_path):
    # a copy of the tiny dataset with one unreadable training photo, read in a loader worker
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    train_list = data / "list" / "daodixian_seg" / "train.lst"
    first = train_list.read_text().splitlines()[0]
    photo = data / "daodixian_seg" / parse_line(first)[0]
    photo.write_bytes(b"not a jpeg")
    opts = tiny_opts(data, tmp_path, "WORKERS", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tools" / "train.py"), "--cfg", str(DEMO_CFG), *opts]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    ours = [ln for ln in run.stderr.splitlines() if ln.startswith("error: [rank ")]
    named = [ln for ln in ours if "train.lst:1" in ln and photo.name in ln]
    assert named, run.stderr[-3000:]  # the list file, its line and the photo, from the worker
    others = [ln for ln in ours if ln not in named]
    assert all("another process of this run failed" in ln for ln in others), ours
    # the collective's own words come after the diagnosis, never instead of it
    assert not any("Connection closed by peer" in ln and "another process" not in ln
                   for ln in ours)


def test_torchrun_time_budget_ends_every_rank_at_rank_zeros_plan(tiny_data, tmp_path):
    """TRAIN.TIME_BUDGET under 2 processes: each rank times its own epochs, rank 0's plan is
    the one every rank follows (a rank that planned one epoch more would wait forever)."""
    opts = tiny_opts(tiny_data, tmp_path, "TRAIN.END_EPOCH", "60", "TRAIN.TIME_BUDGET", "0.15",
                     "TRAIN.EVAL_INTERVAL", "100")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tools" / "train.py"), "--cfg", str(DEMO_CFG), *opts]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ckpt = load_file(tmp_path / "output" / "daodixian_seg" / DEMO_CFG.stem / "checkpoint.pth.tar")
    planned = ckpt["time_budget"]["planned"]
    assert 2 <= ckpt["epoch"] == planned < 60
    assert run.stderr.count("s per epoch") == 1  # the plan, logged by rank 0 only
    assert ckpt["time_budget"]["spent_s"] < 0.15 * 60 + 10

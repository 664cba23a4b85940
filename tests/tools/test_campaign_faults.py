"""Faults of campaigns on several processes (gloo on the CPU): a slow rank at predict's merge,
and ranks that see the photo folder differently."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np

from lib.datasets.synthetic import make_image
from tests.tools.conftest import DEMO_CFG, REPO

# Each rank joins a gloo group whose default timeout is 3 s; rank 1 predicts slowly, so it
# reaches the merge more than 3 s after rank 0. The merge must wait on the host group.
SLOW_RANK = textwrap.dedent(
    """
    import sys, time
    from datetime import timedelta
    import torch, torch.distributed as dist
    from lib.config import get_config
    from lib.core.prediction import list_photos, predict_photos
    dist.init_process_group("gloo", timeout=timedelta(seconds=3))
    rank = dist.get_rank()

    class Slow(torch.nn.Module):  # wire-free logits; rank 1 takes 5 s a photo
        def forward(self, x):
            if rank == 1:
                time.sleep(5)
            return torch.zeros(x.shape[0], 2, x.shape[2] // 4, x.shape[3] // 4)

    cfg = get_config(sys.argv[1], [])
    report = predict_photos(Slow(), cfg, list_photos([sys.argv[2]]), sys.argv[3])
    print(f"rank {rank}: predicted {len(report.predicted)}", flush=True)
    dist.destroy_process_group()
    """
)

# rank 1 "sees" one photo fewer (still being copied in); both must predict rank 0's list
DIFFERENT_VIEWS = textwrap.dedent(
    """
    import sys
    import torch.distributed as dist
    import tools.predict as tool
    dist.init_process_group("gloo")
    real = tool.list_photos
    if dist.get_rank() == 1:
        tool.list_photos = lambda inputs, exclude=None: real(inputs, exclude)[:-1]
    photos = tool.photos_listed_on_main([sys.argv[1]], sys.argv[2])
    print(f"rank {dist.get_rank()}: {len(photos)} photos", flush=True)
    if dist.get_rank() == 1:
        try:
            tool.photos_listed_on_main([sys.argv[1] + "/missing"], sys.argv[2])
        except FileNotFoundError as err:
            print(f"rank 1 error: {err}", flush=True)
    else:
        try:
            tool.photos_listed_on_main([sys.argv[1] + "/missing"], sys.argv[2])
        except FileNotFoundError:
            pass
    dist.destroy_process_group()
    """
)


def _photos(folder, count):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for k in range(count):
        rgb, _ = make_image(rng, 96, 64)
        cv2.imwrite(str(folder / f"p{k}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _torchrun(script, tmp_path, *args):
    path = tmp_path / "script.py"
    path.write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(path), *map(str, args)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_predict_merge_waits_for_a_slow_rank_beyond_the_default_timeout(tmp_path):
    _photos(tmp_path / "photos", 3)
    run = _torchrun(SLOW_RANK, tmp_path, DEMO_CFG, tmp_path / "photos", tmp_path / "out")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 0: predicted 3" in run.stdout and "rank 1: predicted 3" in run.stdout
    with open(tmp_path / "out" / "summary.csv", newline="") as f:
        assert [r["photo"] for r in csv.DictReader(f)] == ["p0.jpg", "p1.jpg", "p2.jpg"]


def test_every_rank_predicts_the_list_rank_zero_made(tmp_path):
    _photos(tmp_path / "photos", 3)
    run = _torchrun(DIFFERENT_VIEWS, tmp_path, tmp_path / "photos", tmp_path / "out")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 0: 3 photos" in run.stdout and "rank 1: 3 photos" in run.stdout
    assert "rank 1 error:" in run.stdout and "missing" in run.stdout  # rank 0's error, everywhere

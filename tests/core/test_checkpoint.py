"""Atomic checkpoint writes, official naming, and RNG state round trips."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import torch
from torch import nn

from lib.core.criterion import CrossEntropy
from lib.utils.checkpoint import (
    load_file,
    official_state_dict,
    rng_state,
    save_atomic,
    set_rng_state,
)


def test_official_prefixes_round_trip():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
    crit = CrossEntropy(255, [1.0], torch.tensor([1.0, 2.0]))
    state = official_state_dict(model, crit)
    assert set(state) == {
        "model.0.weight",
        "model.0.bias",
        "model.1.weight",
        "model.1.bias",
        "model.1.running_mean",
        "model.1.running_var",
        "model.1.num_batches_tracked",
        "loss.criterion.weight",  # the official FullModel's name for the class weights
    }


def test_rng_state_survives_a_weights_only_file(tmp_path):
    save_atomic({"rng": rng_state()}, tmp_path / "c.pth")
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(load_file(tmp_path / "c.pth")["rng"])
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


WRITER = textwrap.dedent(
    """
    import sys, torch
    from lib.utils.checkpoint import save_atomic
    path = sys.argv[1]
    i = 0
    while True:
        i += 1
        save_atomic({"version": i, "blob": torch.full((2_000_000,), float(i))}, path)
        print(i, flush=True)
    """
)


def test_kill_during_save_leaves_a_complete_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pth.tar"
    save_atomic({"version": 0, "blob": torch.zeros(2_000_000)}, path)
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        proc.stdout.readline()  # at least one save finished; kill somewhere in a later one
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        obj = load_file(path)
        assert obj["version"] >= 1
        assert torch.equal(obj["blob"], torch.full((2_000_000,), float(obj["version"])))
    # temporary files from killed writers never carry the final name
    assert all(p.name.startswith(".checkpoint.pth.tar.") for p in tmp_path.iterdir() if p != path)

"""Atomic checkpoint writes, official naming, and RNG state round trips."""

import errno
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from torch import nn

from lib.core.criterion import CrossEntropy
from lib.utils.checkpoint import (
    load_file,
    official_state_dict,
    remove_stale_temporaries,
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


def test_checkpoint_gets_the_permissions_of_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        save_atomic({"a": 1}, tmp_path / "c.pth")
        os.umask(0o027)
        save_atomic({"a": 1}, tmp_path / "d.pth")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.pth").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d.pth").stat().st_mode) == 0o640


def test_stale_temporaries_of_killed_saves_are_removed(tmp_path):
    stale = [tmp_path / ".checkpoint.pth.tar.k2_x9a0b.tmp", tmp_path / ".best.pth.0123abcd.tmp"]
    kept = [
        tmp_path / ".notes.tmp",  # not a save_atomic temporary
        tmp_path / "best.pth.0123abcd.tmp",
        tmp_path / ".best.pth.toolongname.tmp",
        tmp_path / "other.txt",
    ]
    for path in stale + kept:
        path.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".best.pth.0123abcd.tmp").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path, "best.pth") == [stale[1]]
    stale[1].write_bytes(b"x")
    save_atomic({"a": 1}, tmp_path / "checkpoint.pth.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in kept] + ["checkpoint.pth.tar", "sub"]
    )
    assert (tmp_path / "sub" / ".best.pth.0123abcd.tmp").is_file()  # other folders untouched


def test_disk_full_names_the_file_and_leaves_no_half_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth.tar"
    save_atomic({"version": 1}, path)
    before = path.read_bytes()

    def full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as info:
        save_atomic({"version": 2}, path)
    assert str(info.value) == f"{path}: no space left on device while writing the checkpoint"
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth.tar"]


def test_other_write_errors_name_the_file(tmp_path, monkeypatch):
    path = tmp_path / "best.pth"

    def fail(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(
        OSError, match=r"best.pth: cannot write the checkpoint \(Input/output error\)"
    ):
        save_atomic({"a": 1}, path)
    assert list(tmp_path.iterdir()) == []


def test_torch_writers_full_disk_failure_is_said_in_words(tmp_path, monkeypatch):
    """torch.save's zip writer raises RuntimeError("[enforce fail at inline_container.cc...]")
    on a full disk, not OSError: it is said as a full disk, naming the file."""
    from collections import namedtuple

    from lib.utils import checkpoint

    path = tmp_path / "checkpoint.pth.tar"
    save_atomic({"version": 1}, path)
    before = path.read_bytes()

    def full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1024))
    with pytest.raises(OSError) as info:
        save_atomic({"version": 2}, path)
    assert str(info.value) == f"{path}: no space left on device while writing the checkpoint"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth.tar"]
    # with room left, the same failure is an I/O error naming the file
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: usage(10**12, 0, 10**12))
    with pytest.raises(OSError, match=f"{path}: cannot write the checkpoint"):
        save_atomic({"version": 3}, path)

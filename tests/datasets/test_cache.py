"""DATASET.CACHE_DIR: each training photo decoded once, the samples unchanged."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from lib.config import get_config
from lib.datasets import build_dataset
from lib.datasets.base import ListDataset
from lib.datasets.cache import CacheError, PackedLabel

REPO = Path(__file__).resolve().parents[2]


def _photo(path, w, h, seed):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    cv2.line(image, (0, h // 3), (w - 1, h // 2), (20, 20, 20), 2)
    Image.fromarray(image).save(path, quality=92)


def _label(path, w, h, ignore=False):
    label = np.zeros((h, w), np.uint8)
    cv2.line(label, (0, h // 3), (w - 1, h // 2), 1, 1)
    if ignore:
        label[: h // 10] = 255  # not 0/1: stored as raw bytes, not packed
    Image.fromarray(label).save(path)


@pytest.fixture
def data(tmp_path):
    """Two samples: a JPEG with a 0/1 label and a PNG photo whose label has ignore pixels."""
    root = tmp_path / "data"
    (root / "x").mkdir(parents=True)
    _photo(root / "x" / "a.jpg", 960, 540, 0)
    _label(root / "x" / "a.png", 960, 540)
    _photo(root / "x" / "b.png", 400, 640, 1)
    _label(root / "x" / "b_label.png", 400, 640, ignore=True)
    (root / "l.lst").write_text("x/a.jpg x/a.png\nx/b.png x/b_label.png\n")
    return root


def _dataset(root, cache=None, **kw):
    args = dict(num_classes=2, ignore_label=255, augment=True, crop_size=(256, 192),
                base_size=400, scale_factor=16, label_dilate=1)
    args.update(kw)
    return ListDataset(root, root / "l.lst", cache_dir=cache, **args)


def _draws(ds, seed=3, n=10):
    random.seed(seed)
    return [ds[i % len(ds)] for i in range(n)]


def _same(a, b):
    return all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))


def _entries(cache):
    return sorted(p.name for p in cache.iterdir())


@pytest.mark.parametrize("reduced, multi_scale", [(True, True), (False, True), (True, False)])
def test_cached_samples_equal_uncached_ones(data, tmp_path, reduced, multi_scale):
    kw = dict(reduced_decode=reduced, multi_scale=multi_scale)
    reference = _draws(_dataset(data, **kw))
    cache = tmp_path / "cache"
    cold = _draws(_dataset(data, cache, **kw))  # first epoch: decoded and written
    assert len(_entries(cache)) == 2
    warm_ds = _dataset(data, cache, **kw)
    warm = _draws(warm_ds)  # later epochs: read back
    assert _same(reference, cold) and _same(reference, warm)
    fetched = warm_ds.cache.fetch(warm_ds.items[0]["image"], warm_ds.items[0]["label"], None)
    levels = sorted(fetched.images)
    # the JPEG, 960 wide, drawn at 200..840: decoded at full size, 1/2 and 1/4
    assert levels == ([1, 2, 4] if reduced and multi_scale else [1])
    assert isinstance(fetched.label, PackedLabel)  # 0/1 label: 8 pixels per byte
    other = warm_ds.cache.fetch(warm_ds.items[1]["image"], warm_ds.items[1]["label"], None)
    assert sorted(other.images) == [1] and isinstance(other.label, np.ndarray)  # PNG; 255s
    assert other.label.max() == 255


def test_loader_workers_build_the_cache_and_give_the_same_batches(data, tmp_path):
    cache = tmp_path / "cache"

    def batches(cache_dir):
        ds = _dataset(data, cache_dir)
        loader = torch.utils.data.DataLoader(
            ds, batch_size=1, shuffle=True, num_workers=2,
            generator=torch.Generator().manual_seed(0),
        )
        return [(x, y) for x, y, *_ in loader]

    reference = batches(None)
    for _ in range(2):  # workers write the entries, then workers read them
        out = batches(cache)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(reference, out))
        assert len(_entries(cache)) == 2 and not [n for n in _entries(cache) if ".tmp-" in n]


_FETCH = """
import hashlib, random, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.datasets.test_cache import _dataset
root, cache, go = Path({root!r}), Path({cache!r}), Path({go!r})
ds = _dataset(root, cache)
while not go.exists():  # every process misses the cache at the same moment
    time.sleep(0.01)
random.seed(5)
print([hashlib.sha1(ds[i][0].numpy().tobytes()).hexdigest() for i in range(len(ds))])
"""


def test_processes_writing_the_same_entries_at_once_leave_one_complete_copy(data, tmp_path):
    cache, go = tmp_path / "cache", tmp_path / "go"
    code = _FETCH.format(repo=str(REPO), root=str(data), cache=str(cache), go=str(go))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(3)]
    time.sleep(1.0)
    go.touch()
    results = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert results[0] == results[1] == results[2]
    assert len(_entries(cache)) == 2  # no temporary folders left, no duplicates
    random.seed(5)
    ds = _dataset(data, cache)
    hashes = [hashlib.sha1(ds[i][0].numpy().tobytes()).hexdigest() for i in range(len(ds))]
    assert str(hashes) == results[0].strip()  # the same samples as computed here


def test_changed_photo_label_or_settings_are_not_served_from_the_cache(data, tmp_path):
    cache = tmp_path / "cache"
    _draws(_dataset(data, cache))
    before = _entries(cache)
    _photo(data / "x" / "a.jpg", 960, 540, seed=7)  # the photo is replaced
    stat = (data / "x" / "a.jpg").stat()
    os.utime(data / "x" / "a.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _label(data / "x" / "a.png", 960, 540, ignore=True)  # and its label
    assert _same(_draws(_dataset(data)), _draws(_dataset(data, cache)))
    after = _entries(cache)
    assert len(after) == 2 and after != before  # the old entry of a.jpg was replaced
    assert set(before) & set(after) == {n for n in before if n.startswith("b-")}
    # other settings (another experiment sharing the folder) get their own entries
    assert _same(_draws(_dataset(data, label_dilate=0)), _draws(_dataset(data, cache, label_dilate=0)))
    assert len(_entries(cache)) == 4


def test_damaged_entry_is_reported_and_rebuilt(data, tmp_path, caplog):
    cache = tmp_path / "cache"
    reference = _draws(_dataset(data))
    _draws(_dataset(data, cache))
    entry = next(p for p in cache.iterdir() if p.name.startswith("a-"))
    (entry / "meta.json").write_text("{")
    with caplog.at_level(logging.WARNING):
        assert _same(reference, _draws(_dataset(data, cache)))
    assert f"decode cache entry {entry} is unreadable" in caplog.text
    assert (entry / "meta.json").read_text().startswith("{\"width\"")


def test_full_disk_is_reported_once_and_training_goes_on(data, tmp_path, caplog, monkeypatch):
    cache = tmp_path / "cache"
    reference = _draws(_dataset(data))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    ds = _dataset(data, cache)
    with caplog.at_level(logging.WARNING):
        assert _same(reference, _draws(ds))
    warnings = [r for r in caplog.records if "without writing to the cache" in r.getMessage()]
    assert len(warnings) == 1 and "no space left on device" in warnings[0].getMessage()
    assert _entries(cache) == []  # nothing half-written left


def test_unusable_cache_folder_is_one_line_naming_the_key(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheError, match=rf"^DATASET.CACHE_DIR {blocker}/c: cannot create the folder"):
        _dataset(data, blocker / "c")


def test_config_key_caches_training_samples_only(data, tmp_path):
    (tmp_path / "list").symlink_to(data)  # DATASET.ROOT/<DATASET.DATASET> holds the photos
    opts = ["DATASET.ROOT", str(data.parent), "DATASET.DATASET", "list", "DATASET.NUM_CLASSES",
            "2", "DATASET.TRAIN_SET", "data/l.lst", "DATASET.TEST_SET", "data/l.lst",
            "TRAIN.IGNORE_LABEL", "255", "DATASET.CACHE_DIR", str(tmp_path / "cache")]
    cfg = get_config(None, opts)
    assert build_dataset(cfg, "train").cache is not None
    assert build_dataset(cfg, "val").cache is None
    cfg = get_config(None, opts[:-2])
    assert build_dataset(cfg, "train").cache is None  # off by default


def test_killed_writers_temporary_folders_are_removed_when_stale(data, tmp_path):
    from lib.datasets.cache import STALE_AFTER_S

    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / "a-0123-4567.tmp-999999-deadbeef"  # a killed writer's, 67 MB on a big photo
    fresh = cache / "b-0123-4567.tmp-999998-cafecafe"  # another process writing right now
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "image_1.npy").write_bytes(b"0" * 1000)
    past = time.time() - STALE_AFTER_S - 60
    os.utime(old, (past, past))
    ds = _dataset(data, cache)
    assert not old.exists() and fresh.is_dir()
    assert _same(_draws(_dataset(data)), _draws(ds))  # the cache works as before


def test_losing_the_rename_race_is_told_by_its_errno_not_by_is_dir(data, tmp_path, monkeypatch):
    """On a network folder the winner's entry may not show yet (cached attributes): the
    rename's ENOTEMPTY / EEXIST says another process won; the copy is discarded quietly."""
    import errno as errnos

    cache = tmp_path / "cache"
    ds = _dataset(data, cache)
    real_rename = Path.rename

    def lost(self, target):
        if ".tmp-" in self.name:
            raise OSError(errnos.ENOTEMPTY, "Directory not empty")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", lost)
    monkeypatch.setattr(Path, "is_dir", lambda self: False)  # the winner's entry not visible yet
    assert _same(_draws(_dataset(data)), _draws(ds))
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]  # discarded, not left behind
    assert ds.cache.write_failed is None  # not taken for a write failure

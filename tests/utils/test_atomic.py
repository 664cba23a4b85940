"""lib/utils/atomic.py: the one atomic writer."""

from __future__ import annotations

import errno

import cv2
import numpy as np
import pytest

from lib.utils.atomic import remove_stale_temporaries, write_atomic, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    write_text_atomic(path, "old")

    def full(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        write_atomic(path, full, what="the summary")
    assert str(info.value) == f"{path}: no space left on device while writing the summary"
    assert info.value.errno == errno.ENOSPC
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    with pytest.raises(RuntimeError):  # any other error: also nothing left behind
        write_atomic(path, lambda tmp: (_ for _ in ()).throw(RuntimeError("bug")))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_keep_suffix_lets_cv2_pick_the_format_and_stale_temporaries_are_found(tmp_path):
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_atomic(tmp_path / "m.png", lambda tmp: cv2.imwrite(str(tmp), mask), keep_suffix=True)
    assert np.array_equal(cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED), mask)
    stale = [tmp_path / ".m.png.0123abcd.tmp.png", tmp_path / ".c.pth.deadbeef.tmp"]
    kept = [tmp_path / "m.png", tmp_path / ".m.png.tmp", tmp_path / "notes.0123abcd.tmp"]
    for p in stale + kept[1:]:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept)

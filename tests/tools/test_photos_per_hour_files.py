"""docs/benchmarks/photos_per_hour.py reuses a work folder's files only for the same weights."""

from __future__ import annotations

import importlib.util
import os

from tests.tools.conftest import REPO


def _script():
    path = REPO / "docs" / "benchmarks" / "photos_per_hour.py"
    spec = importlib.util.spec_from_file_location("photos_per_hour", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_files_are_named_by_the_weights_they_come_from(tmp_path):
    stem = _script().stem
    assert stem("w18s", {}) == "w18s_random_seed0"  # not a file made before the seed was fixed
    one, two = tmp_path / "fold1" / "final_state.pth", tmp_path / "fold2" / "final_state.pth"
    for f in (one, two):
        f.parent.mkdir()
        f.write_bytes(b"x")
    first = stem("w18s", {"w18s": str(one)})
    assert first.startswith("w18s_final_state_")
    assert first != stem("w18s", {"w18s": str(two)})  # same file name, other fold
    assert first == stem("w18s", {"w18s": str(one)})  # reused
    os.utime(one, ns=(0, 10**9))  # trained again into the same path: not reused
    assert first != stem("w18s", {"w18s": str(one)})
    assert stem("w48", {"w18s": str(one)}) == "w48_random_seed0"


def test_a_campaign_is_copies_of_the_photo_with_the_first_one_first(tmp_path):
    campaign = _script().campaign
    (tmp_path / "photo").mkdir()
    (tmp_path / "photo" / "p.jpg").write_bytes(b"jpeg")
    folder = campaign(tmp_path, 3)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["p.jpg", "p_2.jpg", "p_3.jpg"]  # p.jpg is predicted, and sorted, first
    assert all((folder / n).read_bytes() == b"jpeg" for n in names)
    assert campaign(tmp_path, 3) == folder  # a second run reuses them
    assert sorted(p.name for p in campaign(tmp_path, 1).iterdir()) == ["p.jpg"]

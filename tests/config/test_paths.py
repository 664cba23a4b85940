"""lib/config/paths.py: one object for an experiment's files."""

from __future__ import annotations

from pathlib import Path

from lib.config import ExperimentPaths, get_config
from tests.tools.conftest import DEMO_CFG


def test_paths_follow_the_official_layout():
    cfg = get_config(DEMO_CFG, ["OUTPUT_DIR", "out", "LOG_DIR", "logs"])
    paths = ExperimentPaths.of(cfg, "run")
    folder = Path("out") / "daodixian_seg" / "run"
    assert paths.out_dir == folder
    assert (paths.checkpoint, paths.best, paths.final) == (
        folder / "checkpoint.pth.tar", folder / "best.pth", folder / "final_state.pth")
    assert paths.results(True) == folder / "val_results"
    assert paths.results(False) == folder / "test_results"
    assert paths.test_metrics == folder / "test_metrics.json"
    assert paths.log_file("test") == folder / "run_test.log"
    assert paths.train_log_dir("2026") == Path("logs") / "daodixian_seg" / "run_2026"
    assert paths.cv_summary() == Path("out") / "daodixian_seg" / "run_cv.json"

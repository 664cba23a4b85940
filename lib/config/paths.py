"""Where one experiment's files live, in one object: `ExperimentPaths.of(cfg, name)`.

As officially: OUTPUT_DIR/<dataset>/<name>/ holds checkpoint.pth.tar, best.pth,
final_state.pth (ours: config.yaml, the config of the last training; and tools/test.py's test_metrics.json, val_results/ or test_results/), and
each training logs to LOG_DIR/<dataset>/<name>_<time>/. `name` is the yaml file's stem
(`config_name`), or `<stem>_fold<k>` for a cross-validation fold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ExperimentPaths"]


@dataclass(frozen=True)
class ExperimentPaths:
    name: str
    out_dir: Path  # OUTPUT_DIR/<dataset>/<name>
    log_root: Path  # LOG_DIR/<dataset>

    @classmethod
    def of(cls, cfg, name: str) -> ExperimentPaths:
        dataset = cfg.DATASET.DATASET
        return cls(name, Path(cfg.OUTPUT_DIR) / dataset / name, Path(cfg.LOG_DIR) / dataset)

    @property
    def checkpoint(self) -> Path:
        """The resumable state of the last finished epoch."""
        return self.out_dir / "checkpoint.pth.tar"

    @property
    def best(self) -> Path:
        """Weights of the epoch with the best validation mIoU."""
        return self.out_dir / "best.pth"

    @property
    def final(self) -> Path:
        """Weights after the last epoch (tools/test.py's default TEST.MODEL_FILE)."""
        return self.out_dir / "final_state.pth"

    @property
    def config(self) -> Path:
        """The config a training ran with (cfg.dump()), written at its start."""
        return self.out_dir / "config.yaml"

    @property
    def test_metrics(self) -> Path:
        return self.out_dir / "test_metrics.json"

    def results(self, labelled: bool) -> Path:
        """tools/test.py's prediction PNGs: val_results/ (a labelled list) or test_results/."""
        return self.out_dir / ("val_results" if labelled else "test_results")

    def log_file(self, kind: str) -> Path:
        """<name>_<kind>.log in the output folder (tools/test.py's log)."""
        return self.out_dir / f"{self.name}_{kind}.log"

    def train_log_dir(self, stamp: str | None = None) -> Path:
        """LOG_DIR/<dataset>/<name>_<time>: one training's log file and tensorboard events."""
        return self.log_root / f"{self.name}_{stamp or time.strftime('%Y-%m-%d-%H-%M-%S')}"

    def cv_summary(self) -> Path:
        """tools/cross_validate.py's summary of all folds: OUTPUT_DIR/<dataset>/<name>_cv.json."""
        return self.out_dir.parent / f"{self.name}_cv.json"

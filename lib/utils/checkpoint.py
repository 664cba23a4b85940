"""Checkpoint files in the official layout, written atomically.

`OUTPUT_DIR/<dataset>/<cfg name>/` holds
- `checkpoint.pth.tar`: {epoch, best_mIoU, state_dict, optimizer} as officially, plus what an
  exact resume needs (iteration, scaler, rng states of every rank);
- `best.pth`, `final_state.pth`: a bare state dict.
State dicts use the official `FullModel` naming: `model.<param>` for the network and
`loss.<buffer>` for the criterion, so the official `tools/test.py` (which strips 6 characters)
and resume (strict load into FullModel) read our files, and we read theirs.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lib.utils.atomic import remove_stale_temporaries, write_atomic

MODEL_PREFIX = "model."
LOSS_PREFIX = "loss."

logger = logging.getLogger(__name__)


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save through lib.utils.atomic.write_atomic (fsync, then rename onto `path`).

    A kill at any moment leaves either the previous complete file or the new one; the
    temporary files of killed saves in that folder are removed at the next save (the trainer
    saves on rank 0 only: one writer per folder). The file gets the mode of the umask. Any
    OSError (a full disk among them) leaves `path` as it was and is raised as one line naming
    `path`.
    """
    path = Path(path)
    remove_stale_temporaries(path.parent)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            try:
                torch.save(obj, f)
            except RuntimeError as err:  # torch's writer: "[enforce fail at inline_container.cc]"
                if "inline_container" not in str(err) and "file write failed" not in str(err):
                    raise
                raise _failed_write(tmp) from err

    write_atomic(path, save, what="the checkpoint", sync=True)


def _failed_write(tmp: Path) -> OSError:
    """What torch's zip writer's failure was: a full disk (ENOSPC) when the folder has no room
    left, otherwise an I/O error; `write_atomic` turns it into one line naming the file."""
    try:
        full = shutil.disk_usage(tmp.parent).free < 64 * 2**20
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(errno.EIO, "the write failed")


def official_state_dict(model: nn.Module, criterion: nn.Module | None = None) -> dict:
    """The state dict the official `FullModel(model, loss)` would save: `model.*` and `loss.*`."""
    state = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    weight = getattr(criterion, "weight", None)
    if weight is not None:  # the official loss keeps it in an inner nn.CrossEntropyLoss
        state[LOSS_PREFIX + "criterion.weight"] = weight
    return state


def load_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """torch.load with weights_only=True; a missing or unreadable file names the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise RuntimeError(f"{path}: cannot read checkpoint ({err})") from err


def _numpy_state() -> tuple:
    # weights_only loads refuse NumPy arrays: keep the key vector as a tensor
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)


def rng_state() -> dict:
    """Python, NumPy and torch (CPU and current CUDA device) generator states of this process."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned (after a weights_only load, so types are rebuilt)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())

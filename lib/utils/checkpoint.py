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
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

MODEL_PREFIX = "model."
LOSS_PREFIX = "loss."
# save_atomic's temporary files: ".<name>.<8 random characters>.tmp" (the characters of
# tempfile.mkstemp, which earlier versions used, or hex digits)
_TEMPORARY = r"\.{name}\.[a-z0-9_]{{8}}\.tmp"
_FULL_DISK = {errno.ENOSPC: "no space left on device"}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _FULL_DISK[errno.EDQUOT] = "disk quota exceeded"

logger = logging.getLogger(__name__)


def remove_stale_temporaries(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files that killed `save_atomic` calls left in `folder`.

    Only files named ``.<name>.<8 characters>.tmp`` go: those of target `name`, or of any
    target when `name` is None. Returns the removed paths. One writer per folder is assumed
    (the trainer saves on rank 0 only), as a concurrent save's temporary file would match.
    """
    pattern = re.compile(_TEMPORARY.format(name=re.escape(name) if name else ".+"))
    try:
        candidates = sorted(Path(folder).iterdir())
    except FileNotFoundError:
        return []
    removed = []
    for path in candidates:
        if pattern.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            try:
                path.unlink(missing_ok=True)
            except OSError as err:  # a leftover that cannot go must not stop the next save
                logger.warning("cannot remove %s (%s)", path, err.strerror or err)
                continue
            removed.append(path)
    if removed:
        logger.info(
            "removed %d temporary file(s) of interrupted checkpoint saves in %s",
            len(removed),
            folder,
        )
    return removed


def _open_temporary(path: Path) -> tuple[int, Path]:
    """A new, empty ``.<name>.<random>.tmp`` beside `path`, created with the umask's mode."""
    binary = getattr(os, "O_BINARY", 0)  # Windows
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:  # mode 0o666 & ~umask, as open() gives any other file (mkstemp forces 0o600)
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | binary, 0o666), tmp
        except FileExistsError:
            continue


def _write_error(path: Path, err: OSError) -> OSError:
    """`err` as one line naming the checkpoint file; a full disk is said in words."""
    if err.errno in _FULL_DISK:
        message = f"{path}: {_FULL_DISK[err.errno]} while writing the checkpoint"
    else:
        message = f"{path}: cannot write the checkpoint ({err.strerror or err})"
    error = OSError(message)
    error.errno = err.errno  # kept for callers that test it; str() stays the one line
    return error


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then os.replace onto `path`.

    A kill at any moment leaves either the previous complete file or the new one; the
    temporary files of killed saves in that folder are removed at the next save. The file
    gets the mode of the umask. Any OSError (a full disk among them) removes the temporary
    file, leaves `path` as it was, and is raised as one line naming `path`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        fd, tmp = _open_temporary(path)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _write_error(path, err) from err
        raise


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

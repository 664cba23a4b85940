"""One writer per output folder: a second run into the folder of a running one is refused.

Two trainings started into one OUTPUT_DIR would both write `checkpoint.pth.tar`, `best.pth` and
`final_state.pth`, each replacing the other's files, and both end with exit status 0. The first
run holds an advisory lock (`flock`) on `<folder>/.lock` for as long as it runs; the lock goes
with the process (a killed run leaves none behind, so resuming needs no clean-up). The file
names the holder (pid and host) for the refusal's one line. Where `fcntl` does not exist
(Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

__all__ = ["FolderBusy", "output_lock"]


class FolderBusy(RuntimeError):
    """Another run is writing into the folder."""


@contextlib.contextmanager
def output_lock(folder: str | Path, what: str = "run") -> Iterator[None]:
    """Hold `<folder>/.lock` while the block runs; FolderBusy (one line) if another process
    holds it."""
    path = Path(folder) / ".lock"
    if fcntl is None:
        yield
        return
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FolderBusy(
                f"{folder}: another {what} is writing here ({holder}); wait for it to end, or "
                "give this one another OUTPUT_DIR"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what}, pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

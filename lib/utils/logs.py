"""Rank-aware logging: rank 0 logs INFO to stderr (and a file), other ranks only warnings."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(message)s"


def setup_logging(rank: int = 0, log_file: str | Path | None = None) -> None:
    """Configure the root logger once per process; `log_file` is written by rank 0 only."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ours", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
        handler._ours = True
        root.addHandler(handler)


def error_line(err: BaseException) -> str:
    """An error as the one line a tool prints: its first message line (the type's name when it
    has no message). An error raised in a DataLoader worker, which torch re-raises with the
    worker's traceback, gives the real message from that traceback's last line."""
    text = str(err).strip()
    if "Original Traceback" in text:
        # "...DatasetError: list:3: ..." is the last line of the worker's traceback
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        _, _, message = last.partition(": ")
        text = message or last
    return text.splitlines()[0] if text else type(err).__name__

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


def log_cli_error(logger: logging.Logger, err: BaseException) -> None:
    """The one-line error a CLI prints before exiting non-zero: type and first message line."""
    logging.getLogger().handlers or logging.basicConfig()
    name, text = type(err).__name__, str(err).strip()
    if "Original Traceback" in text:
        # an error raised in a DataLoader worker: torch re-raises it with the worker's
        # traceback and the real message on its last line ("lib...DatasetError: list:3: ...")
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        head, _, message = last.partition(": ")
        name, text = head.rsplit(".", 1)[-1], message or last
    logger.error("%s: %s", name, text.splitlines()[0] if text else name)

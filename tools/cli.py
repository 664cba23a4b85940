"""What every command-line tool shares: its parser, its errors, its exit status.

Exit status, the same for every tool in tools/ and tools_jss/:

    0    done
    1    partly done: some inputs were skipped (each named), or a run stopped after saving
         work it can resume
    2    nothing done: bad input (a config, list, photo, label, weights file or device) or bad
         arguments, said in one line on stderr
    130  interrupted (Ctrl-C): one line says what was saved and how to go on

An error is one line on stderr, ``error: <what is wrong, naming the file>``, never a
traceback; the same line goes to the tool's log file when it has one. Trained weights are
loaded by `lib.models.load_trained` (always strict); `MODEL.PRETRAINED` (backbones) is the only
non-strict, reported path.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from lib.utils.distributed import cleanup, get_rank, get_world_size, peer_failed
from lib.utils.logs import error_line

__all__ = ["DONE", "PARTLY", "NOTHING", "INTERRUPTED", "BAD_INPUT", "tool_parser", "parse",
           "run", "report_error", "StageFailed", "run_stage"]

DONE, PARTLY, NOTHING, INTERRUPTED = 0, 1, 2, 130
# every error a tool turns into one line: ConfigError, DatasetError, DecodeError, WeightsError,
# AnnotationError, ConversionError (ValueError); missing or unwritable files, a full disk
# (OSError); distributed set-up, non-finite losses, CUDA (RuntimeError)
BAD_INPUT = (ValueError, OSError, RuntimeError)


def tool_parser(
    doc: str, *, cfg: bool | str = True, distributed: bool = False, opts: bool = True
) -> argparse.ArgumentParser:
    """A parser whose description is the docstring's first line and whose epilog is the rest.

    cfg: True (--cfg required), a path (--cfg defaults to it) or False (no --cfg);
    distributed: accept --local-rank / --local_rank (the legacy torch.distributed.launch);
    opts: trailing KEY VALUE config overrides, accepted anywhere on the line.
    """
    first, _, rest = (doc or "").strip().partition("\n")
    parser = argparse.ArgumentParser(
        description=first,
        epilog=rest.strip("\n").rstrip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if cfg:
        default = cfg if isinstance(cfg, str) else None
        parser.add_argument(
            "--cfg", default=default, required=default is None, help="experiment yaml file"
        )
    if distributed:
        parser.add_argument(
            "--local-rank", "--local_rank", dest="local_rank", type=int, default=-1,
            help="set by python -m torch.distributed.launch (torchrun sets LOCAL_RANK)",
        )  # fmt: skip
    if opts:
        parser.add_argument(
            "opts", nargs="*", default=[], help="KEY VALUE config overrides, e.g. TRAIN.LR 0.01"
        )
    return parser


def parse(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Options and KEY VALUE overrides in any order (bad arguments: usage, exit 2)."""
    return parser.parse_intermixed_args(argv)


def report_error(err: BaseException) -> None:
    """One line on stderr (and in the log files the root logger writes, if any). In a run of
    several processes, a process stopped only because another one failed says so, instead of
    the collective's own message (the failed process's line names the file and the cause)."""
    if get_world_size() > 1 and peer_failed(err):
        message = ("stopped because another process of this run failed (its error line names "
                   f"the cause): {error_line(err)}")
    else:
        message = error_line(err)
    line = f"error: [rank {get_rank()}] {message}" if get_world_size() > 1 else f"error: {message}"
    print(line, file=sys.stderr, flush=True)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.emit(logging.makeLogRecord({"msg": line, "levelno": logging.ERROR,
                                                "levelname": "ERROR"}))


def run(
    work: Callable[[], int | None],
    *,
    partly_done: Callable[[], bool] | None = None,
    interrupted: Callable[[], str] | None = None,
) -> int:
    """Run a tool's work and return its exit status by the rule above.

    work: returns None or DONE (done) or PARTLY; partly_done: after an error, whether work was
    saved that a rerun continues (exit 1 instead of 2); interrupted: the line to print after
    Ctrl-C. The process group of a distributed run is always destroyed.
    """
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C raises KeyboardInterrupt in the work again (tools/_checkout.py turned it into
        # a quiet exit while the script's imports were loading)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = work()
        return DONE if code is None else int(code)
    except KeyboardInterrupt:
        print(interrupted() if interrupted else "interrupted", file=sys.stderr, flush=True)
        return INTERRUPTED
    except BAD_INPUT as err:
        report_error(err)
        return PARTLY if partly_done is not None and partly_done() else NOTHING
    finally:
        cleanup()


class StageFailed(RuntimeError):
    """A stage's command exited non-zero: its title, the command as typed, its exit status."""

    def __init__(self, title: str, command: str, returncode: int):
        super().__init__(f"stage '{title}' failed (exit {returncode}); its command: {command}")
        self.title, self.command, self.returncode = title, command, returncode


def run_stage(title: str, args: list[str], cwd) -> float:
    """One stage of a tool that chains others (the demo, the pre-training): print its title and
    the command as a user would type it (``python <args>``), run it with this interpreter in
    `cwd`, return the seconds it took; StageFailed when it exits non-zero (its own error line
    is already on stderr)."""
    shown = " ".join(shlex.quote(a) for a in ["python", *args])
    print(f"\n=== {title}\n$ {shown}", flush=True)
    start = time.time()
    returncode = subprocess.run([sys.executable, *args], cwd=cwd).returncode
    if returncode != 0:
        raise StageFailed(title, shown, returncode)
    return time.time() - start

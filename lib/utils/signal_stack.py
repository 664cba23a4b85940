"""Keep the calling thread's alternate signal stack across calls into OpenVINO.

OpenVINO's CPU plugin installs an alternate signal stack (sigaltstack) of its own in the thread
that creates it, remembers the one it replaced, and puts that one back when it is destroyed, but
only if its own is still the current one. Two plugin instances whose lives overlap (an
OpenVinoModel and NNCF's calibration engine, say) and end first-in-first-out leave the thread
pointing at the freed stack of the first. Nothing shows until a signal with a Python handler
arrives (Ctrl-C, the SIGCHLD that PyTorch's DataLoader catches, faulthandler's own): the kernel
cannot write the handler's frame there and the process dies of SIGSEGV, with no traceback.

`keep_signal_stack()` wraps the calls that may create a plugin: it puts the thread's stack back
as it was on the way out, so no plugin's stack stays current and no plugin's destructor changes
it later (a destructor finds a stack that is not its own and leaves it). Linux only; elsewhere,
or where libc cannot be reached, it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["keep_signal_stack", "current_signal_stack"]


class _StackT(ctypes.Structure):  # stack_t of <signal.h> on Linux
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]  # fmt: skip


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.sigaltstack.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def current_signal_stack() -> tuple[int, int, int] | None:
    """(address, size, flags) of the calling thread's alternate signal stack, or None where it
    cannot be read (not Linux)."""
    if _LIBC is None:
        return None
    stack = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return stack.ss_sp or 0, stack.ss_size, stack.ss_flags


SS_ONSTACK = 1  # a flag sigaltstack reports, never one it takes


@contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Run the body, then put the calling thread's alternate signal stack back as it was."""
    before = current_signal_stack()
    try:
        yield
    finally:
        if before is not None and current_signal_stack() != before:
            address, size, flags = before
            restore = _StackT(address, flags & ~SS_ONSTACK, size)
            _LIBC.sigaltstack(ctypes.byref(restore), None)

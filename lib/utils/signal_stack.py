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


@contextmanager
def keep_signal_stack() -> Iterator[None]:
    """Run the body, then put the calling thread's alternate signal stack back as it was."""
    if _LIBC is None:
        yield
        return
    before = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(before)) != 0:
        yield
        return
    try:
        yield
    finally:
        after = _StackT()
        _LIBC.sigaltstack(None, ctypes.byref(after))
        if (after.ss_sp, after.ss_size, after.ss_flags) != (
            before.ss_sp, before.ss_size, before.ss_flags
        ):
            restore = _StackT(before.ss_sp, before.ss_flags & ~1, before.ss_size)  # ~SS_ONSTACK
            _LIBC.sigaltstack(ctypes.byref(restore), None)

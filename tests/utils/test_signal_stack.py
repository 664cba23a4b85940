"""keep_signal_stack puts the thread's alternate signal stack back after a call that swapped it."""

from __future__ import annotations

import ctypes
import sys

import pytest

from lib.utils import signal_stack
from lib.utils.signal_stack import current_signal_stack, keep_signal_stack

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack is read "
                                "through Linux's libc here")  # fmt: skip


def _install(buffer) -> None:
    stack = signal_stack._StackT(ctypes.addressof(buffer), 0, len(buffer))
    assert signal_stack._LIBC.sigaltstack(ctypes.byref(stack), None) == 0


@linux_only
def test_a_stack_swapped_inside_is_put_back():
    before = current_signal_stack()
    assert before is not None
    other = ctypes.create_string_buffer(64 * 1024)
    with keep_signal_stack():
        _install(other)
        assert current_signal_stack()[0] == ctypes.addressof(other)
    assert current_signal_stack() == before


@linux_only
def test_it_is_put_back_when_the_body_raises():
    before = current_signal_stack()
    other = ctypes.create_string_buffer(64 * 1024)
    with pytest.raises(RuntimeError), keep_signal_stack():
        _install(other)
        raise RuntimeError("compile failed")
    assert current_signal_stack() == before


@linux_only
def test_an_untouched_stack_is_left_alone():
    before = current_signal_stack()
    with keep_signal_stack():
        pass
    assert current_signal_stack() == before


def test_without_libc_it_does_nothing(monkeypatch):
    monkeypatch.setattr(signal_stack, "_LIBC", None)
    assert current_signal_stack() is None
    with keep_signal_stack():
        pass

"""A settings object, or its fields given one by one: the calling convention of the functions
that take a frozen settings dataclass (testval, validate, train_one_epoch, ListDataset)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["grouped"]

T = TypeVar("T")


def grouped(cls: type[T], given: T | None, options: dict[str, Any], *, rest: bool = False) -> T:
    """`given`, or a `cls` made of the fields of `cls` popped from `options`.

    A field given both ways is a TypeError; so is anything left in `options` unless `rest`
    (the caller then reads or refuses the rest itself).
    """
    names = [f.name for f in fields(cls) if f.name in options]
    if given is None:
        given = cls(**{name: options.pop(name) for name in names})
    elif names:
        raise TypeError(f"{', '.join(names)} given both alone and in a {cls.__name__}")
    if options and not rest:
        raise TypeError(f"{cls.__name__}: unknown options {', '.join(sorted(options))}")
    return given

"""The one atomic writer: a file is either its previous complete version or the new one.

`write_atomic(path, write)` has `write(tmp)` fill a temporary file beside `path` (same
folder, so the rename cannot cross file systems), optionally fsyncs it, and renames it onto
`path`. Any error removes the temporary file and leaves `path` as it was; an OSError is
raised again as one line naming `path` (a full disk said in words). Temporary files are named
``.<name>.<8 hex digits>.tmp`` (plus `path`'s suffix when the writer picks the format from
it, as cv2.imwrite does), so several processes writing different files into one folder never
collide, and `remove_stale_temporaries` finds what killed writers left.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic", "write_text_atomic", "remove_stale_temporaries", "write_error"]

logger = logging.getLogger(__name__)

# ".<name>.<8 characters>.tmp[.<suffix>]": hex digits now; tempfile.mkstemp's characters in
# the checkpoints of earlier versions
_TEMPORARY = r"\.{name}\.[a-z0-9_]{{8}}\.tmp(\.[A-Za-z0-9]+)?"
_FULL_DISK = {errno.ENOSPC: "no space left on device"}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _FULL_DISK[errno.EDQUOT] = "disk quota exceeded"


def write_error(path: Path, err: OSError, what: str) -> OSError:
    """`err` as one line naming `path`; a full disk is said in words. errno is kept."""
    if err.errno in _FULL_DISK:
        message = f"{path}: {_FULL_DISK[err.errno]} while writing {what}"
    else:
        message = f"{path}: cannot write {what} ({err.strerror or err})"
    error = OSError(message)
    error.errno = err.errno  # kept for callers that test it; str() stays the one line
    return error


def _open_temporary(path: Path, keep_suffix: bool) -> Path:
    """A new, empty temporary file beside `path`, created with the umask's mode."""
    binary = getattr(os, "O_BINARY", 0)  # Windows
    suffix = path.suffix if keep_suffix else ""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}"
        try:  # mode 0o666 & ~umask, as open() gives any other file (mkstemp forces 0o600)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | binary, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_atomic(
    path: str | Path,
    write: Callable[[Path], None],
    *,
    what: str = "it",
    sync: bool = False,
    keep_suffix: bool = False,
) -> None:
    """Write `path` through `write(tmp_path)`, then rename; see the module docstring.

    what: the words for the file in an error ("the checkpoint"); sync: fsync before the
    rename (checkpoints: survive a power cut); keep_suffix: the temporary file ends with
    `path`'s suffix (writers that choose the format by extension).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _open_temporary(path, keep_suffix)
        write(tmp)
        if sync:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise write_error(path, err, what) from err
        raise


def write_text_atomic(path: str | Path, text: str, what: str = "it") -> None:
    """`write_atomic` for a UTF-8 text file (json, csv, lists)."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what=what)


def remove_stale_temporaries(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files that killed `write_atomic` calls left in `folder`.

    Only files named like the module docstring says go: those of target `name`, or of any
    target when `name` is None. Returns the removed paths. Call it when no other process
    writes into `folder` (at a start, or where one process owns the folder), as a write in
    flight has a temporary file of the same form.
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
        logger.info("removed %d temporary file(s) of interrupted writes in %s", len(removed), folder)
    return removed

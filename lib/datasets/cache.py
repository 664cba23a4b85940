"""Decode-once training cache (``DATASET.CACHE_DIR``, ours, off by default).

A training sample starts with decoding the photo and its label: for a 5472x3078 JPEG that is
most of the sample's cost, paid again every epoch. With a cache folder set, the first time a
photo is drawn its decodes are written there as raw ``.npy`` arrays; later epochs (and later
trainings with the same settings) map them from disk and read only the crop window.

What is stored is exactly what the uncached pipeline decodes, so samples are identical for the
same seed: the photo at each libjpeg reduction (1, 1/2, 1/4, 1/8) that the configured random
scales can ask for (`lib.datasets.decode.reduction`; one full-size decode when REDUCED_DECODE is
off or the file is not a JPEG), and the label at full resolution after its checks and
WIRE.LABEL_DILATE. A 0/1 label is stored 8 pixels per byte and unpacked row by row.

An entry is one folder named after the photo and two hashes: one of the image and label paths
with the settings its content depends on (the scale keys, the label mapping and dilation, this
format's version), one of the files' sizes and modification times. Experiments with different
settings keep separate entries in a shared folder; when a photo or label changes, its entry is
no longer found and is deleted once its replacement is written. Delete the folder to reclaim
the space of settings no longer used. Entries are written into a temporary folder private to
the writing process and renamed into place in one step, so several DataLoader workers and torchrun processes (also on a shared network disk) never write the same
file and never read a half-written entry; whoever renames first wins, the others discard theirs.
A cache that cannot be written (full disk, read-only) is reported once and training goes on
without it; an unreadable entry is reported, deleted and rebuilt.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.utils.atomic import write_error

__all__ = ["CacheError", "Decoded", "DecodeCache", "PackedLabel", "label_window"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_TEMP = ".tmp-"


class CacheError(OSError):
    """The cache folder cannot be used at all (named in the message)."""


class PackedLabel:
    """A label of 0s and 1s kept 8 pixels per byte (rows packed along the width)."""

    def __init__(self, packed: np.ndarray, width: int) -> None:
        self.packed, self.width = packed, int(width)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.packed.shape[0], self.width)

    def rows(self, ys: np.ndarray) -> np.ndarray:
        return np.unpackbits(np.asarray(self.packed[ys]), axis=1, count=self.width)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        full = np.unpackbits(np.asarray(self.packed), axis=1, count=self.width)
        return full if dtype is None else full.astype(dtype)


def label_window(raw: np.ndarray | PackedLabel, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``raw[ys][:, xs]`` reading only rows `ys` (of a memory-mapped or packed label)."""
    if isinstance(raw, PackedLabel):
        return raw.rows(ys)[:, xs]
    return raw[np.ix_(ys, xs)]


@dataclass
class Decoded:
    """One photo's decodes: `images` maps each libjpeg reduction k to the RGB decode at 1/k
    (`jpeg`: whether the file is a JPEG, which decides the reduction a size asks for)."""

    width: int
    height: int
    images: dict[int, np.ndarray]
    label: np.ndarray | PackedLabel | None
    jpeg: bool


def _digest(value: object) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def _version(path: Path | None) -> list | None:
    """(size, modification time) of a file: what changes when the file is replaced."""
    if path is None:
        return None
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


# An entry is written in seconds; a temporary folder untouched for this long is a killed
# writer's (its pid may be on another machine of a shared disk, so age is the test)
STALE_AFTER_S = 600


def remove_stale_entries(folder: Path, now: float | None = None) -> int:
    """Remove the temporary folders of killed writers (about 67 MB for a 5472x3078 photo) older
    than STALE_AFTER_S; returns how many went."""
    now = time.time() if now is None else now
    removed = 0
    for tmp in folder.glob(f"*{_TEMP}*"):
        try:
            stale = now - tmp.stat().st_mtime > STALE_AFTER_S
        except OSError:  # removed meanwhile by another process
            continue
        if stale:
            shutil.rmtree(tmp, ignore_errors=True)
            removed += 1
    if removed:
        logger.info("decode cache %s: removed %d temporary folder(s) of killed writers",
                    folder, removed)
    return removed


class DecodeCache:
    """The entries of one cache folder for one dataset's settings (`settings`: json-able)."""

    def __init__(self, folder: str | Path, settings: dict) -> None:
        self.folder = Path(folder)
        self.settings = {"format": FORMAT_VERSION, **settings}
        self.write_failed: str | None = None  # why writing stopped (reported once)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheError(
                f"DATASET.CACHE_DIR {self.folder}: cannot create the folder "
                f"({err.strerror or err})"
            ) from None
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise CacheError(f"DATASET.CACHE_DIR {self.folder}: the folder is not writable")
        self.removed_stale = remove_stale_entries(self.folder)

    # ---- naming ---------------------------------------------------------------------------

    def entry_name(self, image: Path, label: Path | None) -> tuple[str, str]:
        """(name of the entry for these files now, the prefix every version of it shares)."""
        where = _digest([str(image.resolve()), str(label.resolve()) if label else None,
                         self.settings])
        what = _digest([_version(image), _version(label)])
        prefix = f"{image.stem[:40]}-{where}-"
        return prefix + what, prefix

    # ---- reading and writing ---------------------------------------------------------------

    def fetch(self, image: Path, label: Path | None, build: Callable[[], Decoded]) -> Decoded:
        """The decodes of (`image`, `label`): read from the cache, or built and stored."""
        name, prefix = self.entry_name(image, label)
        entry = self.folder / name
        if entry.is_dir():
            try:
                return self._read(entry)
            except (OSError, ValueError, KeyError) as err:
                logger.warning("decode cache entry %s is unreadable (%s): rebuilding it", entry, err)
                shutil.rmtree(entry, ignore_errors=True)
        decoded = build()
        if self.write_failed is None:
            self._write(entry, prefix, decoded)
        return decoded

    def _read(self, entry: Path) -> Decoded:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        images = {int(k): np.load(entry / f"image_{k}.npy", mmap_mode="r") for k in meta["levels"]}
        label = None
        if meta["label"] is not None:
            stored = np.load(entry / "label.npy", mmap_mode="r")
            label = PackedLabel(stored, meta["width"]) if meta["label"] == "packed" else stored
        return Decoded(meta["width"], meta["height"], images, label, meta["jpeg"])

    def _write(self, entry: Path, prefix: str, decoded: Decoded) -> None:
        tmp = entry.with_name(f"{entry.name}{_TEMP}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            tmp.mkdir()
            for k, image in decoded.images.items():
                np.save(tmp / f"image_{k}.npy", np.ascontiguousarray(image))
            kind = None
            if decoded.label is not None:
                label = np.asarray(decoded.label)
                if label.dtype != np.uint8 or label.size == 0 or label.max() > 1:
                    kind = "raw"
                else:
                    kind, label = "packed", np.packbits(label, axis=1)
                np.save(tmp / "label.npy", label)
            meta = {"width": decoded.width, "height": decoded.height,
                    "levels": sorted(decoded.images), "label": kind, "jpeg": decoded.jpeg}
            (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            try:
                tmp.rename(entry)  # atomic; fails when another process renamed its copy first
            except OSError as err:
                # the errno says so; a network folder's cached attributes may not show the
                # other process's entry yet, so is_dir() is no test
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                return
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            self.write_failed = str(write_error(entry, err, "the decode cache"))
            logger.warning("%s; training goes on without writing to the cache", self.write_failed)
            return
        for old in self.folder.glob(f"{prefix}*"):  # earlier versions of this entry
            if old.name != entry.name and _TEMP not in old.name:
                shutil.rmtree(old, ignore_errors=True)

    def size_bytes(self) -> int:
        """Bytes the complete entries take on disk."""
        return sum(f.stat().st_size for f in self.folder.glob("*/*") if _TEMP not in f.parent.name)

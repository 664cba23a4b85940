"""Annotation files + photos -> the dataset layout and list files the datasets read.

Layout written under `out` (the dataset root, ``<DATASET.ROOT>/<DATASET.DATASET>``)::

    <out>/<split>/images/<photo>          copied or linked
    <out>/<split>/annotations/<stem>.png  class ids (or a palette PNG whose indices are ids)
    <list_dir>/<split>.lst                "<split>/images/<photo><TAB><split>/annotations/<stem>.png"

Annotated images are sorted by file name and every `val_every`-th one (the 1st, 9th, 17th,
...) goes to val, so the split depends only on the set of names. List lines are
tab-separated (`lib.datasets.lists`), so photo names may hold spaces. The lists of one
conversion replace those of an earlier one as a set: a train, val or unlabeled list that this
conversion does not write (``val_every=0``, or no image of that split written) is removed when
it writes any list, so no photo is left in two splits.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from lib.datasets.annotations import AnnotationError, ImageAnnotation, parse_file, rasterise
from lib.datasets.lists import IMAGE_SUFFIXES, format_row, write_list
from lib.datasets.palette import (
    CITYSCAPES_ID_PALETTE,
    POWERLINE_PALETTE,
    save_id_png,
    save_palette_png,
    voc_palette,
)

__all__ = [
    "ConvertOptions",
    "ConvertSummary",
    "ConversionError",
    "parse_classes",
    "convert",
    "POWERLINE_CLASSES",
]

logger = logging.getLogger(__name__)

POWERLINE_CLASSES = {"background": 0, "wire": 1}


class ConversionError(ValueError):
    """A problem that stops the conversion (bad options, or any bad item under --strict)."""


@dataclass
class ConvertOptions:
    images: Path
    out: Path
    list_dir: Path
    fmt: str = "auto"
    encoding: str = "ids"  # ids | color
    classes: dict[str, int] = field(default_factory=lambda: dict(POWERLINE_CLASSES))
    val_every: int = 8  # 0: no val split
    train_name: str = "train"
    val_name: str = "val"
    line_width: int = 5
    strict: bool = False
    ignore_unknown: bool = False
    link: str = "copy"  # copy | symlink | hardlink
    unlabeled_name: str = ""  # split name for images without results ("" : skip them)


@dataclass
class ConvertSummary:
    written: Counter = field(default_factory=Counter)  # split -> images written
    skipped: list[str] = field(default_factory=list)  # one-line reasons
    unannotated: int = 0
    removed: list[str] = field(default_factory=list)  # one line per stale list file removed

    def lines(self) -> list[str]:
        done = ", ".join(f"{split}: {n}" for split, n in sorted(self.written.items())) or "none"
        return [
            f"images written: {done}; skipped: {len(self.skipped)}; without annotations: {self.unannotated}",
            *self.removed,
        ]


def parse_classes(text: str) -> dict[str, int]:
    """'background=0,wire=1' or a file of 'name=id' / 'name id' lines -> {name: id}."""
    source = text
    if text and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8").replace("\n", ",")
    classes = {}
    for part in text.split(","):
        part = part.strip()
        if not part or part.startswith("#"):
            continue
        name, sep, value = part.rpartition("=") if "=" in part else part.rpartition(" ")
        try:
            class_id = int(value)
        except ValueError:
            class_id = -1
        if not sep or not name.strip() or not 0 <= class_id <= 255:
            raise ConversionError(
                f"{source}: bad class entry {part!r} (expected name=id with id in 0..255)"
            )
        classes[name.strip()] = class_id
    if not classes:
        raise ConversionError(f"{source}: no classes given")
    return classes


def _index_images(root: Path) -> dict[str, list[Path]]:
    index: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            index.setdefault(path.name, []).append(path)
    return index


def _find_image(
    ann: ImageAnnotation, json_path: Path, index: dict[str, list[Path]], images: Path
) -> Path:
    name = ann.image.replace("\\", "/").rsplit("/", 1)[-1]
    if ann.fmt == "labelme":
        beside = (json_path.parent / ann.image.replace("\\", "/")).resolve()
        if beside.is_file():
            return beside
    found = index.get(name, [])
    if len(found) > 1:
        raise AnnotationError(
            f"{ann.source}: image name {name} is ambiguous under {images}: {found[0]}, {found[1]}"
        )
    if not found:
        raise AnnotationError(f"{ann.source}: image {name} not found under {images}")
    return found[0]


def _open_image(path: Path, source: str) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), after checking the data decodes."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1)
            if img.format == "JPEG":
                img.draft(
                    "RGB", (max(1, width // 8), max(1, height // 8))
                )  # cheap full-stream check
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise AnnotationError(f"{source}: image {path} does not open ({err})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _place(src: Path, dst: Path, how: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if how == "symlink":
        dst.symlink_to(src.resolve())
    elif how == "hardlink":
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def _palette(opts: ConvertOptions, fmt: str) -> list:
    if fmt == "cityscapes":
        return CITYSCAPES_ID_PALETTE
    if max(opts.classes.values()) <= 1:
        return POWERLINE_PALETTE
    return voc_palette(max(opts.classes.values()) + 1)


def convert(inputs: list[Path], opts: ConvertOptions) -> ConvertSummary:
    """Convert every annotation file in `inputs` (files or folders of *.json); see the module doc."""
    if opts.encoding not in ("ids", "color"):
        raise ConversionError(f"unknown encoding {opts.encoding!r} (ids or color)")
    if not opts.images.is_dir():
        raise ConversionError(f"--images {opts.images}: not a folder")
    files = []
    for path in inputs:
        if path.is_dir():
            files += sorted(path.rglob("*.json"))
        elif path.is_file():
            files.append(path)
        else:
            raise ConversionError(f"--input {path}: no such file or folder")
    if not files:
        raise ConversionError(f"--input {', '.join(map(str, inputs))}: no JSON files")
    summary = ConvertSummary()

    def bad(message: str) -> None:
        if opts.strict:
            raise ConversionError(message)
        logger.warning("%s", message)
        summary.skipped.append(message)

    found: list[tuple[ImageAnnotation, Path]] = []
    unlabeled: list[tuple[str, Path]] = []
    for path in files:
        try:
            result = parse_file(path, opts.fmt)
        except AnnotationError as err:
            bad(str(err))
            continue
        for err in result.errors:
            bad(str(err))
        for warning in result.warnings:
            logger.warning("%s", warning)
        found += [(ann, path) for ann in result.annotations]
        summary.unannotated += len(result.unannotated)
        unlabeled += [(uri, path) for uri in result.unannotated]

    index = _index_images(opts.images)
    seen: set[str] = set()
    named = []
    for ann, path in found:
        name = ann.image.replace("\\", "/").rsplit("/", 1)[-1]
        if name in seen:
            bad(f"{ann.source}: image {name} is annotated more than once; keeping the first")
            continue
        seen.add(name)
        named.append((name, ann, path))
    named.sort(key=lambda t: t[0])

    lists: dict[str, list[list[str]]] = {}
    for i, (_name, ann, path) in enumerate(tqdm(named, desc="labels", unit="img", disable=None)):
        split = opts.val_name if opts.val_every and i % opts.val_every == 0 else opts.train_name
        try:
            image_path = _find_image(ann, path, index, opts.images)
            row = _list_row(ann.source, split, image_path, labelled=True)
            width, height = _open_image(image_path, ann.source)
            label = rasterise(
                ann, width, height, opts.classes, opts.line_width, opts.ignore_unknown
            )
        except AnnotationError as err:
            bad(str(err))
            continue
        image_rel, label_rel = row
        if opts.encoding == "color":
            save_palette_png(label, opts.out / label_rel, _palette(opts, ann.fmt))
        else:
            save_id_png(label, opts.out / label_rel)
        _place(image_path, opts.out / image_rel, opts.link)
        lists.setdefault(split, []).append(row)
        summary.written[split] += 1

    if opts.unlabeled_name:
        for uri, path in unlabeled:
            source = f"{path} ({uri})"
            try:
                image_path = _find_image(ImageAnnotation(source, uri), path, index, opts.images)
                row = _list_row(source, opts.unlabeled_name, image_path, labelled=False)
            except AnnotationError as err:
                bad(str(err))
                continue
            _place(image_path, opts.out / row[0], opts.link)
            lists.setdefault(opts.unlabeled_name, []).append(row)
            summary.written[opts.unlabeled_name] += 1

    _write_lists(lists, opts, summary)
    return summary


def _list_row(source: str, split: str, image_path: Path, labelled: bool) -> list[str]:
    """The list row of a photo in `split` (paths relative to the dataset root)."""
    row = [f"{split}/images/{image_path.name}"]
    if labelled:
        row.append(f"{split}/annotations/{image_path.stem}.png")
    try:
        format_row(row)
    except ValueError as err:
        raise AnnotationError(f"{source}: {err}") from None
    return row


def _write_lists(
    lists: dict[str, list[list[str]]], opts: ConvertOptions, summary: ConvertSummary
) -> None:
    """Write one list per split; when any is written, remove this run's splits left unwritten."""
    if not lists:
        return  # nothing converted: the lists of an earlier conversion stay as they were
    for split, rows in lists.items():
        write_list(opts.list_dir / f"{split}.lst", rows)
    for split in dict.fromkeys((opts.train_name, opts.val_name, opts.unlabeled_name)):
        stale = opts.list_dir / f"{split}.lst"
        if split and split not in lists and stale.is_file():
            stale.unlink()
            summary.removed.append(
                f"removed {stale}: left by an earlier conversion, and this one has no {split} images"
            )

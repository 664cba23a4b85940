"""List files: one sample per line, and the rows for existing image/label trees.

A line is ``image_path<TAB>label_path`` (or ``image_path`` for a test list). Readers split on
tabs when a line has one, and on any whitespace otherwise, so the official space-separated
lists read as before and tab-separated ones allow spaces in names (``DJI 0001.jpg``); an
image-only path with a space is written with a trailing tab. Names are never quoted.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["pair_folders", "cityscapes_rows", "format_row", "parse_line", "write_list"]

# the one list of photo suffixes every tool accepts (lower case)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def pair_folders(root: Path, images: str, labels: str | None) -> tuple[list[list[str]], list[str]]:
    """Rows ``[image, label]`` (paths relative to `root`) matched by file stem, and unmatched images.

    With `labels` None the rows hold images only (a test list).
    """
    image_files = sorted(
        p for p in (root / images).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not image_files:
        raise ValueError(f"{root / images}: no images")
    seen: dict[str, Path] = {}
    for p in image_files:  # a.jpg and a.png would both take the label a.png
        stem = p.relative_to(root / images).with_suffix("").as_posix()
        if stem in seen:
            raise ValueError(
                f"{root / images}: {seen[stem].name} and {p.name} share the name {stem!r}, so "
                "one label would serve both; rename or remove one"
            )
        seen[stem] = p
    if labels is None:
        return [[p.relative_to(root).as_posix()] for p in image_files], []
    label_files = {}
    for p in sorted((root / labels).rglob("*.png")):
        label_files.setdefault(p.relative_to(root / labels).with_suffix("").as_posix(), p)
    rows, unmatched = [], []
    for p in image_files:
        key = p.relative_to(root / images).with_suffix("").as_posix()
        if key in label_files:
            rows.append(
                [p.relative_to(root).as_posix(), label_files[key].relative_to(root).as_posix()]
            )
        else:
            unmatched.append(p.relative_to(root).as_posix())
    return rows, unmatched


def cityscapes_rows(
    root: Path, split: str, with_labels: bool = True
) -> tuple[list[list[str]], list[str]]:
    """Rows for a Cityscapes split: leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine *_labelIds.png."""
    images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not images:
        raise ValueError(f"{root / 'leftImg8bit' / split}: no */*_leftImg8bit.png images")
    rows, unmatched = [], []
    for p in images:
        image = p.relative_to(root).as_posix()
        if not with_labels:
            rows.append([image])
            continue
        label = (
            root
            / "gtFine"
            / split
            / p.parent.name
            / p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        )
        if label.is_file():
            rows.append([image, label.relative_to(root).as_posix()])
        else:
            unmatched.append(image)
    return rows, unmatched


def parse_line(line: str) -> list[str]:
    """The paths on one list line: split on tabs if there is one, else on whitespace."""
    if "\t" in line:
        return [field.strip() for field in line.split("\t") if field.strip()]
    return line.split()


def format_row(row: list[str]) -> str:
    """One list line (no newline) that `parse_line` reads back as `row`.

    Empty paths, and paths with a tab or line break or starting or ending with whitespace,
    raise ValueError.
    """
    for field in row:
        if not field or field != field.strip() or any(c in field for c in "\t\n\r"):
            raise ValueError(
                f"{field!r} cannot be written to a list file "
                "(empty, or a tab, line break, or leading or trailing whitespace in the name)"
            )
    line = "\t".join(row)
    if len(row) == 1 and len(line.split()) > 1:
        line += "\t"  # a tab marks the spaces as part of the one path
    return line


def write_list(path: Path, rows: list[list[str]]) -> None:
    """Write rows as list lines: image and label separated by a tab (see the module doc)."""
    try:
        text = "".join(format_row(row) + "\n" for row in rows)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")

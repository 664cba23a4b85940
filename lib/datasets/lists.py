"""List files for existing image/label trees (plain folders or Cityscapes leftImg8bit/gtFine)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["pair_folders", "cityscapes_rows", "write_list"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def pair_folders(root: Path, images: str, labels: str | None) -> tuple[list[list[str]], list[str]]:
    """Rows ``[image, label]`` (paths relative to `root`) matched by file stem, and unmatched images.

    With `labels` None the rows hold images only (a test list).
    """
    image_files = sorted(
        p for p in (root / images).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not image_files:
        raise ValueError(f"{root / images}: no images")
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


def write_list(path: Path, rows: list[list[str]]) -> None:
    """Write rows in the official list format: image and label separated by a tab."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")

"""Overlay labels or predictions on photos and box large connected regions (the seed's draw_contours).

python tools_jss/visualize.py --list data/list/daodixian_seg/val.lst --root data/daodixian_seg --out vis/
python tools_jss/visualize.py --images photos/ --labels predictions/ --out vis/ --min-area 500
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import argparse
import sys
from pathlib import Path

import cv2

from lib.datasets.decode import DecodeError, decode_image, decode_label
from lib.datasets.lists import IMAGE_SUFFIXES, parse_line
from lib.datasets.overlay import overlay, region_boxes
from lib.datasets.palette import palette_for
from tools import cli


def _pairs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    if args.list:
        pairs = []
        for number, line in enumerate(args.list.read_text(encoding="utf-8-sig").split("\n"), start=1):
            parts = parse_line(line)
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(
                    f"{args.list}:{number}: expected 'image_path label_path', got {line.strip()!r}"
                )
            pairs.append((args.root / parts[0], args.root / parts[1]))
        return pairs
    for flag, folder in (("--images", args.images), ("--labels", args.labels)):
        if folder is None or not folder.is_dir():
            raise FileNotFoundError(f"{flag} {folder}: no such folder")
    labels = {p.stem: p for p in sorted(args.labels.rglob("*.png"))}
    pairs = [
        (p, labels[p.stem])
        for p in sorted(args.images.rglob("*"))
        if p.stem in labels and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not pairs:
        raise ValueError(f"no image in {args.images} has a label of the same name in {args.labels}")
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = cli.tool_parser(__doc__, cfg=False, opts=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--list", type=Path, help="list file (image label per line)")
    source.add_argument("--images", type=Path, help="folder of photos (with --labels)")
    parser.add_argument(
        "--root", type=Path, default=Path("."), help="folder list paths are relative to"
    )
    parser.add_argument(
        "--labels", type=Path, help="folder of label/prediction PNGs named like the photos"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the overlays (JPEG)")
    parser.add_argument(
        "--dataset", default="daodixian_seg", help="palette to use (cityscapes or any)"
    )
    parser.add_argument("--num-classes", type=int, default=2)
    parser.add_argument(
        "--min-area",
        type=int,
        default=200,
        help="box regions of at least this many pixels (0: no boxes)",
    )
    parser.add_argument("--alpha", type=float, default=0.6)
    args = cli.parse(parser, argv)
    if args.images and not args.labels:
        parser.error("--images needs --labels")
    palette = palette_for(args.dataset, args.num_classes)
    failed = 0
    try:
        pairs = _pairs(args)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for image_path, label_path in pairs:
        try:
            image, ids = decode_image(image_path), decode_label(label_path)
            if args.num_classes == 2:
                ids = (ids > 0).astype(ids.dtype)  # 0/1 and the seed's 0/255 masks alike
            boxes = (
                region_boxes(ids, range(1, args.num_classes), args.min_area)
                if args.min_area
                else []
            )
            drawn = overlay(image, ids, palette, args.alpha, boxes)
        except (DecodeError, ValueError) as err:
            print(f"skipped {image_path}: {err}", file=sys.stderr)
            failed += 1
            continue
        cv2.imwrite(
            str(args.out / f"{image_path.stem}.jpg"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)
        )
    print(f"wrote {len(pairs) - failed} overlays to {args.out}; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run(main))  # Ctrl-C: one line, exit 130

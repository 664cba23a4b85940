"""Write list files for an existing images/annotations tree (Cityscapes leftImg8bit/gtFine too).

    python tools_jss/make_lists.py --root data/daodixian_seg --images train/images \
        --labels train/annotations --out data/list/daodixian_seg/train.lst
    python tools_jss/make_lists.py --root data/cityscapes --cityscapes val --out data/list/cityscapes/val.lst
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.datasets.lists import cityscapes_rows, pair_folders, write_list


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, required=True, help="dataset root; list paths are relative to it"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images", help="image folder under --root (pairs with --labels by file stem)"
    )
    source.add_argument(
        "--cityscapes", metavar="SPLIT", help="train | val | test: Cityscapes layout under --root"
    )
    parser.add_argument(
        "--labels", help="label folder under --root; omit for an image-only (test) list"
    )
    parser.add_argument("--no-labels", action="store_true", help="Cityscapes: image-only list")
    parser.add_argument("--out", type=Path, required=True, help="list file to write")
    args = parser.parse_args(argv)
    try:
        if args.cityscapes:
            rows, unmatched = cityscapes_rows(args.root, args.cityscapes, not args.no_labels)
        else:
            rows, unmatched = pair_folders(args.root, args.images, args.labels)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: no image under {args.root} has a label", file=sys.stderr)
        return 2
    write_list(args.out, rows)
    print(f"wrote {len(rows)} lines to {args.out}; {len(unmatched)} images without a label")
    for path in unmatched[:20]:
        print(f"  no label: {path}")
    return 1 if unmatched else 0


if __name__ == "__main__":
    sys.exit(main())

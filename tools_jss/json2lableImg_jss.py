r"""Polygon annotations (platform / labelme / cityscapes JSON) -> label PNGs, split and list files.

    python tools_jss/json2lableImg_jss.py --input export.json --images photos/ \\
        --out data/daodixian_seg --list-dir data/list/daodixian_seg

Writes <out>/<split>/images, <out>/<split>/annotations and <list-dir>/<split>.lst (paths
relative to --out, the dataset root; image and label separated by a tab, so photo names may
hold spaces). A list of an earlier conversion into the same --list-dir that this run does not
write (val.lst with --val-every 0) is removed, with a line saying so.

Platform coordinates are normalised to [0, 1]; a little outside is clamped. An item with
coordinates above 2 was exported in pixels: it is drawn in pixels, with one warning line per
file naming those items. A malformed item is skipped with a line naming the file and item.

Exit status: 0 all written, 1 something skipped, 2 nothing written (bad options, an empty
export, every item skipped, or a bad item under --strict).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import logging
import sys
from pathlib import Path

from lib.datasets.conversion import (
    POWERLINE_CLASSES,
    ConversionError,
    ConvertOptions,
    convert,
    parse_classes,
)
from tools import cli


def main(argv: list[str] | None = None) -> int:
    parser = cli.tool_parser(__doc__, cfg=False, opts=False)
    parser.add_argument(
        "--input", required=True, nargs="+", type=Path, help="JSON file(s) or folder(s) of them"
    )
    parser.add_argument(
        "--images", required=True, type=Path, help="folder the photos are in (searched recursively)"
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="dataset root to write (<DATASET.ROOT>/<DATASET.DATASET>)",
    )
    parser.add_argument(
        "--format", default="auto", choices=["auto", "platform", "labelme", "cityscapes"]
    )
    parser.add_argument(
        "--encoding",
        default="ids",
        choices=["ids", "color"],
        help="ids: 8-bit class ids; color: palette PNG",
    )
    parser.add_argument(
        "--classes",
        default=",".join(f"{k}={v}" for k, v in POWERLINE_CLASSES.items()),
        help="label=id pairs ('background=0,wire=1') or a file of them",
    )
    parser.add_argument(
        "--val-every",
        type=int,
        default=8,
        help="every N-th annotated image (by name) goes to val; 0: none",
    )
    parser.add_argument("--train-name", default="train")
    parser.add_argument("--val-name", default="val")
    parser.add_argument(
        "--unlabeled-name",
        default="",
        help="also write images without annotations to this split (image-only list)",
    )
    parser.add_argument(
        "--list-dir", type=Path, default=None, help="default: data/list/<name of --out>"
    )
    parser.add_argument(
        "--line-width",
        type=int,
        default=5,
        help="pixels, for labelme line/linestrip shapes (default 5)",
    )
    parser.add_argument(
        "--link",
        default="copy",
        choices=["copy", "symlink", "hardlink"],
        help="how images are placed",
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first bad file or item")
    parser.add_argument(
        "--ignore-unknown",
        action="store_true",
        help="skip shapes with unknown labels instead of the image",
    )
    args = cli.parse(parser, argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        classes = parse_classes(args.classes)
        opts = ConvertOptions(
            images=args.images,
            out=args.out,
            list_dir=args.list_dir or Path("data/list") / args.out.name,
            fmt=args.format,
            encoding=args.encoding,
            classes=classes,
            val_every=args.val_every,
            train_name=args.train_name,
            val_name=args.val_name,
            line_width=args.line_width,
            strict=args.strict,
            ignore_unknown=args.ignore_unknown,
            link=args.link,
            unlabeled_name=args.unlabeled_name,
        )
        summary = convert(args.input, opts)
    except (ConversionError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    for reason in summary.skipped:
        print(f"  skipped: {reason}")
    if not sum(summary.written.values()):  # an empty export, or every item skipped
        print(f"error: {args.input}: no image was written (an empty export, or every item "
              "skipped: see the lines above)", file=sys.stderr)
        return 2
    return 1 if summary.skipped else 0


if __name__ == "__main__":
    sys.exit(cli.run(main))  # Ctrl-C: one line, exit 130

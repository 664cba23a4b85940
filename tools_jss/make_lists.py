"""Write list files for an existing images/annotations tree (Cityscapes leftImg8bit/gtFine too).

    python tools_jss/make_lists.py --root data/daodixian_seg --images train/images \\
        --labels train/annotations --out data/list/daodixian_seg/train.lst
    python tools_jss/make_lists.py --root data/cityscapes --cityscapes val --out data/list/cityscapes/val.lst
    python tools_jss/make_lists.py --folds 5 --from-list data/list/daodixian_seg/all.lst \\
        --out data/list/daodixian_seg/folds

K folds (--folds K --from-list LIST): the lines of LIST sorted by image path (as text) are cut
into K contiguous blocks of equal size (+-1); fold k (1..K) validates on block k and trains on
the others: <out>/fold<k>_train.lst and <out>/fold<k>_val.lst, plus <out>/folds.json. The
split depends only on the names, so it is the same on every machine and every run.
tools/cross_validate.py trains and scores every fold.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import json
import sys
from pathlib import Path

from lib.datasets.lists import cityscapes_rows, pair_folders, parse_line, write_list
from tools import cli


def fold_lines(lines: list[str], k: int) -> list[list[str]]:
    """The K validation blocks of `lines` (sorted by image path, contiguous, sizes differ by
    at most one)."""
    if k < 2:
        raise ValueError(f"--folds {k}: need at least 2 folds")
    if len(lines) < k:
        raise ValueError(f"{len(lines)} photos cannot make {k} folds")
    ordered = sorted(lines, key=lambda line: parse_line(line)[0])
    n = len(ordered)
    return [ordered[i * n // k : (i + 1) * n // k] for i in range(k)]


def write_folds(list_file: Path, k: int, out: Path) -> list[dict]:
    """Write fold<k>_train.lst / fold<k>_val.lst (+ folds.json) under `out`; returns the folds."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise ValueError(f"{list_file}: cannot read list file ({err.strerror or err})") from None
    lines = [ln.rstrip("\r\n") for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    blocks = fold_lines(lines, k)
    out.mkdir(parents=True, exist_ok=True)
    folds = []
    for i, block in enumerate(blocks, start=1):
        val = set(block)
        train = [ln for b in blocks for ln in b if ln not in val]
        (out / f"fold{i}_train.lst").write_text("".join(ln + "\n" for ln in train), "utf-8")
        (out / f"fold{i}_val.lst").write_text("".join(ln + "\n" for ln in block), "utf-8")
        folds.append({"fold": i, "train": len(train), "val": len(block),
                      "val_photos": [parse_line(ln)[0] for ln in block]})
    (out / "folds.json").write_text(
        json.dumps({"source": str(list_file), "folds": folds}, indent=2), "utf-8"
    )
    return folds


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--folds" in argv or any(a.startswith("--folds=") for a in argv):
        return folds_main(argv)
    parser = cli.tool_parser(__doc__, cfg=False, opts=False)
    parser.add_argument(
        "--root", type=Path, required=True, help="dataset root; list paths are relative to it"
    )
    parser.add_argument("--folds", type=int, help="cut --from-list into K folds (see below)")
    parser.add_argument("--from-list", type=Path, help="with --folds: the list file to cut")
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
    args = cli.parse(parser, argv)
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
    try:
        write_list(args.out, rows)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} lines to {args.out}; {len(unmatched)} images without a label")
    for path in unmatched[:20]:
        print(f"  no label: {path}")
    return 1 if unmatched else 0


def folds_main(argv: list[str]) -> int:
    parser = cli.tool_parser(__doc__, cfg=False, opts=False)
    parser.add_argument("--folds", type=int, required=True, help="number of folds K (>= 2)")
    parser.add_argument("--from-list", type=Path, required=True, help="the list file to cut")
    parser.add_argument("--out", type=Path, required=True, help="folder for the fold lists")
    parser.add_argument("--root", type=Path,
                        help="accepted and not needed: the list's paths are kept as written")
    args = cli.parse(parser, argv)
    try:
        folds = write_folds(args.from_list, args.folds, args.out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"fold {f['fold']}: {f['train']} train / {f['val']} val" for f in folds)
    print(f"wrote {len(folds)} folds to {args.out} ({sizes})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))  # Ctrl-C: one line, exit 130

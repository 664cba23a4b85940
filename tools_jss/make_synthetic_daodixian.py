"""Write a generated power-line dataset: JPEG photos + ONE annotation-platform JSON.

    python tools_jss/make_synthetic_daodixian.py --out data/synthetic/raw --num 48 --seed 0
    python tools_jss/json2lableImg_jss.py --input data/synthetic/raw/annotations.json \\
        --images data/synthetic/raw/images --out data/synthetic/daodixian_seg \\
        --list-dir data/synthetic/list/daodixian_seg
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import sys

from lib.datasets.synthetic import STYLES, generate
from tools import cli


def main(argv: list[str] | None = None) -> int:
    parser = cli.tool_parser(__doc__, cfg=False, opts=False)
    parser.add_argument(
        "--out", required=True, help="folder to write images/ and annotations.json into"
    )
    parser.add_argument("--num", type=int, default=48, help="number of images (default 48)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--width", type=int, default=960, help="image width (default 960)")
    parser.add_argument("--height", type=int, default=540, help="image height (default 540)")
    parser.add_argument(
        "--style",
        choices=list(STYLES),
        default="demo",
        help="demo: wide visible wires (the demo); real: thin, low-contrast, occluded wires "
        "among hard negatives; aerial: 1.5-5 px sunlit or dark wires over ground with fine "
        "natural texture (canopy, scrub with twigs, fields) and hard negatives; canopy: aerial "
        "plus thin curved gaps between leaf clusters and bare branches (not wires); canopy_close: "
        "canopy with a quarter of the spans close up (5-16 px round cables); urban: "
        "close-up towns and roads (slabs, road markings, kerbs, railings, roofs, poles, bare "
        "trees, hedges; not wires) with 1-4 px wires and 8-30 px round cables",
    )
    args = cli.parse(parser, argv)
    if args.num < 1 or args.width < 64 or args.height < 64:
        print("error: --num must be >= 1 and --width/--height >= 64", file=sys.stderr)
        return 2
    try:
        json_path = generate(
            args.out, args.num, args.seed, args.width, args.height, style=args.style
        )
    except OSError as err:
        cli.report_error(err)
        return cli.NOTHING
    print(f"wrote {args.num} images and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))  # Ctrl-C: one line, exit 130

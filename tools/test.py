"""Evaluate a trained network on DATASET.TEST_SET: metrics table + json, prediction PNGs.

    python tools/test.py --cfg X.yaml [TEST.MODEL_FILE path.pth] [TEST.SCALE_LIST 0.5,0.75,1.0]
        [TEST.FLIP_TEST True] [TEST.ZOOM 3]
    torchrun --nproc_per_node=4 tools/test.py --cfg X.yaml

TEST.MODEL_FILE defaults to OUTPUT_DIR/<dataset>/<cfg name>/final_state.pth (ours and the
official files alike, loaded strictly). Metrics go to test_metrics.json and predictions to
val_results/ (a labelled list) or test_results/ in that folder. TEST.ZOOM scores the photos as
if the camera were closer (3: the centre third of each photo upscaled 3x, wires 3x wider) or
further (0.5: the photo halved). Exit status: 0 done, 2 nothing done (bad input, one line on
stderr), 130 interrupted.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import sys

from lib.config import config_name, get_config
from lib.core.evaluation import evaluate, metrics_table
from tools import cli


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__, distributed=True)
    parser.add_argument(
        "--no-save", dest="save", action="store_false", help="do not write prediction PNGs"
    )
    return cli.parse(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def work() -> None:
        cfg = get_config(args.cfg, args.opts)
        metrics = evaluate(cfg, config_name(args.cfg), args.local_rank, args.save)
        if metrics is not None:
            print(metrics_table(metrics))

    return cli.run(work)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Pick the wire probability threshold that maximises wire F1 on a labelled (validation) list.

    python tools/pick_threshold.py --cfg experiments/daodixian_seg/X.yaml \\
        TEST.MODEL_FILE output/daodixian_seg/X/best.pth [DATASET.TEST_SET list/.../val.lst]
    torchrun --nproc_per_node=4 tools/pick_threshold.py --cfg X.yaml TEST.MODEL_FILE ...

Runs tools/test.py's inference (TEST.SCALE_LIST, TEST.FLIP_TEST) on DATASET.TEST_SET, counts
tolerant wire precision / recall (WIRE.TOLERANCE_*) for thresholds 0.02, 0.04, ..., 0.98
summed over all photos (one dataset-level threshold, as ODS is defined for edges), and writes
the best one to `<TEST.MODEL_FILE>.wire_threshold.json`. tools/test.py and tools/predict.py
use that file when WIRE.THRESHOLD is auto (the default); argmax ignores it. Pick on a
validation list, never on the photos you report results on.
Exit status: 0 written, 2 nothing written (bad input, one line on stderr).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import logging
import sys

from lib.config import config_name, get_config
from lib.core.evaluation import evaluate
from lib.core.thresholds import DEFAULT_THRESHOLDS, ThresholdSweep, write_threshold
from lib.core.wire_metrics import wire_metrics_from_cfg
from lib.utils.distributed import is_main_process
from tools import cli

logger = logging.getLogger("pick_threshold")


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__, distributed=True)
    parser.add_argument(
        "--thresholds",
        default="",
        help="comma-separated thresholds in (0, 1) (default: 0.02 to 0.98 in steps of 0.02)",
    )
    return cli.parse(parser, argv)


def pick(cfg, name: str, thresholds, local_rank: int = -1) -> dict | None:
    """Sweep and write; returns the record written (rank 0) or None (other ranks)."""
    if not cfg.TEST.MODEL_FILE:
        raise ValueError("TEST.MODEL_FILE is empty: give the weights whose threshold to pick")
    wire = wire_metrics_from_cfg(cfg)
    if wire is None:
        raise ValueError(
            f"{cfg.DATASET.DATASET} has no wire class: set WIRE.CLASSES to pick a threshold"
        )
    sweep = ThresholdSweep(thresholds, wire.wire_classes, wire.tolerance, wire.ignore_label)
    cfg.defrost()
    cfg.WIRE.THRESHOLD = "argmax"  # the argmax numbers, reported beside the picked ones
    cfg.freeze()
    metrics = evaluate(cfg, name, local_rank, save=False, sweep=sweep)
    if not is_main_process():
        return None
    if metrics is None:
        raise ValueError(f"{cfg.DATASET.TEST_SET}: the list has no labels to pick a threshold on")
    if not sweep.counts[:, 3].any():  # nothing to find: every threshold "scores" F1 1.0
        raise ValueError(
            f"{cfg.DATASET.TEST_SET}: its {sweep.images} photos hold no labelled wire pixel, so "
            "no threshold can be picked on them (nothing written); use a list with wires"
        )
    best = sweep.best()
    argmax = metrics["wire"]
    record = {
        **best,
        "argmax": {k: argmax[k] for k in ("precision", "recall", "f1")},
        "test_set": cfg.DATASET.TEST_SET,
        "model_file": cfg.TEST.MODEL_FILE,
        "tolerance": wire.tolerance,
        "scales": list(cfg.TEST.SCALE_LIST),
        "flip": bool(cfg.TEST.FLIP_TEST),
        "sweep": sweep.scores(),
    }
    path = write_threshold(cfg.TEST.MODEL_FILE, record)
    rows = [
        r
        for r in sweep.scores()
        if round(r["threshold"] * 100) % 10 == 0 or r["threshold"] == best["threshold"]
    ]
    print(f"{'threshold':>9}  {'precision':>9}  {'recall':>9}  {'F1':>7}")
    for r in rows:
        mark = "  <- best" if r["threshold"] == best["threshold"] else ""
        print(f"{r['threshold']:>9.2f}  {r['precision']:>9.4f}  {r['recall']:>9.4f}  "
              f"{r['f1']:>7.4f}{mark}")
    print(f"{'argmax':>9}  {argmax['precision']:>9.4f}  {argmax['recall']:>9.4f}  "
          f"{argmax['f1']:>7.4f}")
    print(f"wire threshold {best['threshold']:.2f} (F1 {best['f1']:.4f} vs argmax "
          f"{argmax['f1']:.4f} on {sweep.images} photos) written to {path}")
    return record


def main(argv=None) -> int:
    args = parse_args(argv)

    def work() -> None:
        thresholds = (
            [float(t) for t in args.thresholds.split(",") if t.strip()]
            if args.thresholds
            else list(DEFAULT_THRESHOLDS)
        )
        pick(get_config(args.cfg, args.opts), config_name(args.cfg), thresholds, args.local_rank)

    return cli.run(work)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Train and score every cross-validation fold: how good will a model of these photos be?

    python tools_jss/make_lists.py --folds 5 --from-list data/list/daodixian_seg/all.lst \
        --out data/list/daodixian_seg/folds
    python tools/cross_validate.py --cfg experiments/daodixian_seg/X.yaml \
        --folds data/list/daodixian_seg/folds [KEY VALUE ...]

For each fold k (fold<k>_train.lst / fold<k>_val.lst in --folds) this trains tools/train.py's
way with DATASET.TRAIN_SET / TEST_SET set to the fold's lists, into
OUTPUT_DIR/<dataset>/<cfg name>_fold<k>/, and scores the last epoch's validation (single
scale, whole photos, argmax): tolerant wire precision / recall / F1 (TEST.WIRE_TOLERANCE),
clDice, mIoU. It prints one row per fold, the mean and the worst, and writes
OUTPUT_DIR/<dataset>/<cfg name>_cv.json. A fold whose training finished earlier is not trained
again (its checkpoint holds its scores) unless --overwrite; a killed run resumes its fold with
TRAIN.RESUME. Exit status: 0 every fold scored, 1 error (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

from lib.config import config_name, get_config
from lib.core.trainer import train
from lib.utils.checkpoint import load_file
from lib.utils.logs import log_cli_error

logger = logging.getLogger("cross_validate")
KEYS = ("f1", "precision", "recall", "cldice")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cfg", required=True, help="experiment yaml file")
    p.add_argument("--folds", required=True, type=Path, help="folder of fold<k>_*.lst files")
    p.add_argument("--only", default="", help="comma-separated fold numbers (default: all)")
    p.add_argument("--overwrite", action="store_true", help="train folds again that are done")
    p.add_argument("opts", nargs="*", help="KEY VALUE config overrides (every fold)")
    return p.parse_intermixed_args(argv)


def find_folds(folder: Path) -> list[int]:
    """Fold numbers with both lists in `folder`; a one-line error when there are none."""
    numbers = sorted(
        int(p.name[4 : -len("_train.lst")])
        for p in folder.glob("fold*_train.lst")
        if p.name[4 : -len("_train.lst")].isdigit()
    )
    missing = [k for k in numbers if not (folder / f"fold{k}_val.lst").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: fold{missing[0]}_val.lst is missing")
    if not numbers:
        raise FileNotFoundError(
            f"{folder}: no fold<k>_train.lst files (make them with tools_jss/make_lists.py --folds)"
        )
    return numbers


def fold_scores(metrics: dict) -> dict:
    wire = metrics.get("wire")
    if not wire:
        raise ValueError("the validation reported no wire scores (set TEST.WIRE_CLASSES)")
    return {**{k: wire[k] for k in KEYS}, "miou": metrics["miou"]}


def run_fold(args, k: int) -> dict:
    folder = args.folds.resolve()
    name = f"{config_name(args.cfg)}_fold{k}"
    opts = [
        *args.opts,
        "DATASET.TRAIN_SET", str(folder / f"fold{k}_train.lst"),
        "DATASET.TEST_SET", str(folder / f"fold{k}_val.lst"),
    ]
    cfg = get_config(args.cfg, opts)
    out = Path(cfg.OUTPUT_DIR) / cfg.DATASET.DATASET / name
    done = out / "final_state.pth"
    if done.is_file() and not args.overwrite:
        ckpt = load_file(out / "checkpoint.pth.tar")
        if ckpt.get("epoch") == cfg.TRAIN.END_EPOCH + cfg.TRAIN.EXTRA_EPOCH and "metrics" in ckpt:
            logger.info("fold %d: done earlier (%s)", k, out)
            return fold_scores(ckpt["metrics"])
    resume = (out / "checkpoint.pth.tar").is_file() and not args.overwrite
    cfg.defrost()
    cfg.TRAIN.RESUME = resume
    cfg.TRAIN.OVERWRITE = bool(args.overwrite)
    cfg.freeze()
    result = train(cfg, name)
    return fold_scores(result["last"])


def table(rows: dict[int, dict]) -> str:
    lines = [f"{'fold':>6}  {'F1':>7}  {'P':>7}  {'R':>7}  {'clDice':>7}  {'mIoU':>7}"]
    for k, r in rows.items():
        lines.append(f"{k:>6}  {r['f1']:>7.4f}  {r['precision']:>7.4f}  {r['recall']:>7.4f}  "
                     f"{r['cldice']:>7.4f}  {r['miou']:>7.4f}")
    for label, pick in (("mean", statistics.fmean), ("worst", min)):
        vals = {key: pick(r[key] for r in rows.values()) for key in (*KEYS, "miou")}
        lines.append(f"{label:>6}  {vals['f1']:>7.4f}  {vals['precision']:>7.4f}  "
                     f"{vals['recall']:>7.4f}  {vals['cldice']:>7.4f}  {vals['miou']:>7.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        numbers = find_folds(args.folds)
        if args.only:
            wanted = {int(v) for v in args.only.split(",") if v.strip()}
            unknown = sorted(wanted - set(numbers))
            if unknown:
                raise ValueError(f"--only {args.only}: no fold {unknown[0]} in {args.folds}")
            numbers = [k for k in numbers if k in wanted]
        rows = {k: run_fold(args, k) for k in numbers}
        cfg = get_config(args.cfg, args.opts)
        summary = {
            "cfg": args.cfg,
            "folds_dir": str(args.folds),
            "folds": rows,
            "mean": {key: statistics.fmean(r[key] for r in rows.values()) for key in (*KEYS, "miou")},
            "worst": {key: min(r[key] for r in rows.values()) for key in (*KEYS, "miou")},
            "tolerance": cfg.TEST.WIRE_TOLERANCE,
        }
        path = Path(cfg.OUTPUT_DIR) / cfg.DATASET.DATASET / f"{config_name(args.cfg)}_cv.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2))
    except (ValueError, RuntimeError, OSError) as err:
        log_cli_error(logger, err)
        return 1
    print(table(rows))
    print(f"wire F1 mean {summary['mean']['f1']:.4f}, worst {summary['worst']['f1']:.4f} "
          f"over {len(rows)} folds; {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

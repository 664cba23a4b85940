"""Train and score every cross-validation fold: how good will a model of these photos be?

    python tools_jss/make_lists.py --folds 5 --from-list data/list/daodixian_seg/all.lst \\
        --out data/list/daodixian_seg/folds
    python tools/cross_validate.py --cfg experiments/daodixian_seg/X.yaml \\
        --folds data/list/daodixian_seg/folds [KEY VALUE ...]

For each fold k (fold<k>_train.lst / fold<k>_val.lst in --folds) this trains tools/train.py's
way with DATASET.TRAIN_SET / TEST_SET set to the fold's lists, into
OUTPUT_DIR/<dataset>/<cfg name>_fold<k>/, then scores the fold's final weights on its held-out
photos the way tools/test.py would (TEST.SCALE_LIST, TEST.FLIP_TEST): tolerant wire precision
/ recall / F1 (WIRE.TOLERANCE_*), clDice and mIoU at argmax, and wire P / R / F1 at a
probability threshold picked on the *other* folds' held-out photos (the honest use of a
threshold). It prints one row per fold, the mean and the worst, and the threshold picked on
all folds together: the WIRE.THRESHOLD to give a model trained on every photo with the
same recipe. Everything goes to OUTPUT_DIR/<dataset>/<cfg name>_cv.json.

--zoom 0.5,1,2,3,4 also scores every held-out photo as if the camera were closer or further
(TEST.ZOOM: zoom z > 1 is the photo's centre 1/z upscaled z times, bilinear for the photo and
nearest for the label before WIRE.LABEL_DILATE; z < 1 the photo downscaled): wires z times
wider or narrower than the photos hold. It prints the mean and worst-fold wire F1 per zoom, how
far each zoom falls below zoom 1, and the reference to read a zoom against: the fold models'
zoom-1 predictions carried to that zoom and scored there (with a tolerance fixed in pixels the
labels' own placement error grows with the zoom, so even a model that does at every zoom what it
does at zoom 1 scores lower at zoom 4), and on how many held-out photos a labelled wire is still
in view (a closer camera sees the photo's centre only: on the 50 PLD-UAV photos 26 keep a wire
at zoom 4, so a fold's zoom-4 score rests on about five photos).

A fold whose training finished earlier is not trained again (its checkpoint holds its
scores) unless --overwrite, and its held-out scores are kept (cv_eval.json in its folder)
while the test settings are the same; a killed run resumes its fold with TRAIN.RESUME.
Exit status: 0 every fold scored, 1 stopped by an error after some folds were trained (rerun
to continue), 2 nothing done (bad input, one line on stderr), 130 interrupted.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import json
import logging
import os
import statistics
import sys
from pathlib import Path

from lib.config import ExperimentPaths, config_name, get_config, wire_tolerance
from lib.core.budget import finished_epochs
from lib.core.evaluation import carried_zoom_scores, evaluate
from lib.core.thresholds import DEFAULT_THRESHOLDS, ThresholdSweep, held_out_thresholds
from lib.core.training import train
from lib.core.wire_metrics import wire_metrics_from_cfg
from lib.utils.atomic import write_text_atomic
from lib.utils.checkpoint import load_file
from tools import cli

logger = logging.getLogger("cross_validate")
KEYS = ("f1", "precision", "recall", "cldice")
EVAL_FILE = "cv_eval.json"


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument("--folds", required=True, type=Path, help="folder of fold<k>_*.lst files")
    parser.add_argument("--only", default="", help="comma-separated fold numbers (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="train folds again that are done")
    parser.add_argument("--zoom", default="1",
                        help="comma-separated zooms to score each fold at (default 1; e.g. "
                        "0.5,1,2,3,4)")
    return cli.parse(parser, argv)


def parse_zooms(text: str) -> list[float]:
    """'0.5,1,2' -> [1.0, 0.5, 2.0]: zoom 1 first (the main table), each zoom once, all > 0."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--zoom {text}: not a comma-separated list of numbers") from None
    if not values or not all(0 < v < float("inf") for v in values):
        raise ValueError(f"--zoom {text}: every zoom must be a number > 0")
    return [1.0, *dict.fromkeys(v for v in values if v != 1.0)]


def eval_file(zoom: float) -> str:
    return EVAL_FILE if zoom == 1 else f"cv_eval_zoom{zoom:g}.json"


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


def run_fold(args, k: int):
    """Train fold k unless done; returns (its config with TEST.MODEL_FILE set, its folder)."""
    folder = args.folds.resolve()
    name = f"{config_name(args.cfg)}_fold{k}"
    opts = [
        *args.opts,
        "DATASET.TRAIN_SET", str(folder / f"fold{k}_train.lst"),
        "DATASET.TEST_SET", str(folder / f"fold{k}_val.lst"),
    ]
    cfg = get_config(args.cfg, opts)
    paths = ExperimentPaths.of(cfg, name)
    out, done = paths.out_dir, paths.final
    finished = False
    if done.is_file() and not args.overwrite:
        ckpt = load_file(paths.checkpoint)
        finished = ckpt.get("epoch") == finished_epochs(cfg, ckpt)
    cfg.defrost()
    if finished:
        logger.info("fold %d: trained earlier (%s)", k, out)
    else:
        cfg.TRAIN.RESUME = paths.checkpoint.is_file() and not args.overwrite
        cfg.TRAIN.OVERWRITE = bool(args.overwrite)
        cfg.freeze()
        train(cfg, name)
        cfg.defrost()
        for stale in out.glob("cv_eval*.json"):  # new weights: score them again
            stale.unlink(missing_ok=True)
    cfg.TEST.MODEL_FILE = str(done)
    cfg.WIRE.THRESHOLD = "argmax"  # the threshold columns come from the sweep
    cfg.freeze()
    return cfg, out


def eval_settings(cfg) -> dict:
    """What the held-out scores depend on besides the weights (a change scores again)."""
    return {
        "scales": [float(v) for v in cfg.TEST.SCALE_LIST],
        "flip": bool(cfg.TEST.FLIP_TEST),
        "base_size": int(cfg.TEST.BASE_SIZE),
        "image_size": [int(v) for v in cfg.TEST.IMAGE_SIZE],
        "tolerance": wire_tolerance(cfg),  # the number TEST.WIRE_TOLERANCE held: kept scores stay
        "label_dilate": int(cfg.WIRE.LABEL_DILATE),
        "thresholds": list(DEFAULT_THRESHOLDS),
        "test_set": cfg.DATASET.TEST_SET,
        **({"zoom": float(cfg.TEST.ZOOM)} if cfg.TEST.ZOOM != 1 else {}),
        **({"fuse": cfg.TEST.SCALE_FUSE} if cfg.TEST.SCALE_FUSE != "sum" else {}),
    }


def kept_record(path: Path, settings: dict) -> dict | None:
    """The record kept in `path` when it was scored with `settings`, else None (none kept,
    other settings, or a damaged file: score again)."""
    if not path.is_file():
        return None
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return kept if kept.get("settings") == settings else None


def score_fold(cfg, out: Path, k: int) -> dict:
    """The fold's held-out scores at argmax and its threshold-sweep counts (kept on disk)."""
    path = out / eval_file(cfg.TEST.ZOOM)
    settings = eval_settings(cfg)
    kept = kept_record(path, settings)
    if kept is not None:
        return kept
    wire = wire_metrics_from_cfg(cfg)
    if wire is None:
        raise ValueError(f"{cfg.DATASET.DATASET} has no wire class: set WIRE.CLASSES")
    sweep = ThresholdSweep(DEFAULT_THRESHOLDS, wire.wire_classes, wire.tolerance,
                           wire.ignore_label)
    metrics = evaluate(cfg, out.name, save=False, sweep=sweep)
    record = {
        "settings": settings,
        "scores": {**{key: metrics["wire"][key] for key in KEYS}, "miou": metrics["miou"]},
        "counts": sweep.counts.tolist(),
    }
    write_text_atomic(path, json.dumps(record))
    logger.info("fold %d: wire F1 %.4f on %d held-out photos%s", k, record["scores"]["f1"],
                sweep.images, f" at zoom {cfg.TEST.ZOOM:g}" if cfg.TEST.ZOOM != 1 else "")
    return record


def summarise(records: dict[int, dict]) -> dict:
    """Per-fold rows (argmax scores + threshold picked on the other folds), mean, worst."""
    rows = {k: dict(r["scores"]) for k, r in records.items()}
    pooled = None
    if len(records) >= 2:
        held = held_out_thresholds({k: r["counts"] for k, r in records.items()},
                                   DEFAULT_THRESHOLDS)
        for k, row in held["folds"].items():
            rows[k].update({"threshold": row["threshold"], "f1_at_threshold": row["f1"],
                            "precision_at_threshold": row["precision"],
                            "recall_at_threshold": row["recall"]})
        pooled = held["pooled"]
    columns = [c for c in next(iter(rows.values())) if c != "threshold"]
    return {
        "folds": rows,
        "mean": {c: statistics.fmean(r[c] for r in rows.values()) for c in columns},
        "worst": {c: min(r[c] for r in rows.values()) for c in columns},
        "threshold_for_all_photos": pooled,
    }


def recommend(summary: dict) -> float:
    """The WIRE.THRESHOLD for a model of all the photos: the one picked on all folds when
    thresholds picked on other folds beat argmax held out (mean and worst fold), else -1
    (argmax; the number the summary json has always held). A threshold near the top of the fold models' probabilities can leave another
    model with no wire pixel at all; the held-out scores are what says so."""
    pooled = summary["threshold_for_all_photos"]
    if pooled is None:
        return -1.0
    mean, worst = summary["mean"], summary["worst"]
    if mean["f1_at_threshold"] >= mean["f1"] and worst["f1_at_threshold"] >= worst["f1"] - 0.01:
        return float(pooled["threshold"])
    return -1.0


def table(summary: dict) -> str:
    rows = summary["folds"]
    thr = summary["threshold_for_all_photos"] is not None
    head = f"{'fold':>6}  {'F1':>7}  {'P':>7}  {'R':>7}  {'clDice':>7}  {'mIoU':>7}"
    if thr:
        head += f"  |  {'thresh':>6}  {'F1':>7}  {'P':>7}  {'R':>7}"

    def line(label, r, t="") -> str:
        text = (f"{label:>6}  {r['f1']:>7.4f}  {r['precision']:>7.4f}  {r['recall']:>7.4f}  "
                f"{r['cldice']:>7.4f}  {r['miou']:>7.4f}")
        if thr:
            text += (f"  |  {t:>6}  {r['f1_at_threshold']:>7.4f}  "
                     f"{r['precision_at_threshold']:>7.4f}  {r['recall_at_threshold']:>7.4f}")
        return text

    lines = [head, *(line(str(k), r, f"{r['threshold']:.2f}" if thr else "")
                     for k, r in rows.items())]
    lines += [line("mean", summary["mean"]), line("worst", summary["worst"])]
    return "\n".join(lines)


def carried_fold(cfg, out: Path, zooms: list[float]) -> dict[float, dict]:
    """The fold's zoom-1 predictions carried to each zoom and scored (kept on disk)."""
    path = out / "cv_eval_carried.json"
    settings = {**eval_settings(cfg), "zooms": zooms}
    kept = kept_record(path, settings)
    if kept is not None and all("photos_with_wire" in v for v in kept["scores"].values()):
        return {float(z): v for z, v in kept["scores"].items()}
    scores = carried_zoom_scores(cfg, cfg.TEST.MODEL_FILE, zooms)
    write_text_atomic(path, json.dumps({"settings": settings,
                                        "scores": {f"{z:g}": v for z, v in scores.items()}}))
    return scores


def at_zoom(cfg, zoom: float):
    """A copy of the fold's config that scores at TEST.ZOOM `zoom`."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.ZOOM = float(zoom)
    cfg.freeze()
    return cfg


def zoom_summary(by_zoom: dict[float, dict[int, dict]],
                 carried: dict[int, dict[float, dict]] | None = None) -> dict:
    """Per zoom: each fold's argmax scores, their mean and worst, the mean F1's fall below
    zoom 1's, the mean F1 of the zoom-1 predictions carried to that zoom, and on how many of the
    held-out photos a labelled wire is in view at that zoom."""
    out = {}
    for zoom, records in by_zoom.items():
        rows = {k: dict(r["scores"]) for k, r in records.items()}
        mean = {c: statistics.fmean(r[c] for r in rows.values()) for c in (*KEYS, "miou")}
        worst = {c: min(r[c] for r in rows.values()) for c in (*KEYS, "miou")}
        out[f"{zoom:g}"] = {"folds": rows, "mean": mean, "worst": worst}
        if carried:
            out[f"{zoom:g}"]["carried_f1"] = {k: c[zoom]["f1"] for k, c in carried.items()}
            out[f"{zoom:g}"]["carried_mean_f1"] = statistics.fmean(
                c[zoom]["f1"] for c in carried.values())
            for key in ("photos_with_wire", "photos"):  # summed over the folds
                out[f"{zoom:g}"][key] = sum(c[zoom][key] for c in carried.values())
    base = out["1"]["mean"]["f1"]
    for row in out.values():
        row["drop_from_zoom_1"] = base - row["mean"]["f1"]
    return out


def zoom_table(zooms: dict) -> str:
    head = (f"{'zoom':>6}  {'mean F1':>7}  {'worst':>7}  {'mean P':>7}  {'mean R':>7}  "
            f"{'below zoom 1':>12}  {'zoom 1 carried':>14}  {'photos with wire':>16}")
    lines = [head]
    for zoom, row in sorted(zooms.items(), key=lambda item: float(item[0])):
        m = row["mean"]
        carried = f"{row['carried_mean_f1']:>14.4f}" if "carried_mean_f1" in row else f"{'-':>14}"
        in_view = (f"{row['photos_with_wire']} of {row['photos']}" if "photos" in row else "-")
        lines.append(f"{zoom:>6}  {m['f1']:>7.4f}  {row['worst']['f1']:>7.4f}  "
                     f"{m['precision']:>7.4f}  {m['recall']:>7.4f}  {row['drop_from_zoom_1']:>12.4f}"
                     f"  {carried}  {in_view:>16}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    records: dict[int, dict] = {}
    return cli.run(lambda: cross_validate(args, records), partly_done=lambda: bool(records))


def cross_validate(args, records: dict) -> None:
    """Train and score the folds (into `records`), write the summary json and print it."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each rank would decide and score alone
        raise ValueError(
            "tools/cross_validate.py runs as one process (its folds one after another); start it "
            "with python, not torchrun, or run each fold's training with torchrun tools/train.py"
        )
    parse_zooms(args.zoom)  # a bad --zoom: one line before any training
    numbers = find_folds(args.folds)
    if args.only:
        wanted = {int(v) for v in args.only.split(",") if v.strip()}
        unknown = sorted(wanted - set(numbers))
        if unknown:
            raise ValueError(f"--only {args.only}: no fold {unknown[0]} in {args.folds}")
        numbers = [k for k in numbers if k in wanted]
    zooms = parse_zooms(args.zoom)
    by_zoom: dict[float, dict[int, dict]] = {z: {} for z in zooms}
    carried: dict[int, dict[float, dict]] = {}
    for k in numbers:
        cfg, out = run_fold(args, k)
        records[k] = score_fold(at_zoom(cfg, 1.0), out, k)
        by_zoom[1.0][k] = records[k]
        for zoom in zooms[1:]:
            by_zoom[zoom][k] = score_fold(at_zoom(cfg, zoom), out, k)
        if len(zooms) > 1:
            carried[k] = carried_fold(at_zoom(cfg, 1.0), out, zooms)
    cfg = get_config(args.cfg, args.opts)
    summary = {
        "cfg": args.cfg,
        "folds_dir": str(args.folds),
        **summarise(records),
        "test": {key: eval_settings(cfg)[key] for key in ("scales", "flip", "tolerance")}
        | {"fuse": cfg.TEST.SCALE_FUSE},
    }
    if len(zooms) > 1:
        summary["zoom"] = zoom_summary(by_zoom, carried)
    summary["recommended_threshold"] = recommend(summary)
    path = ExperimentPaths.of(cfg, config_name(args.cfg)).cv_summary()
    write_text_atomic(path, json.dumps(summary, indent=2), "the cross-validation summary")
    print(table(summary))
    mean, worst = summary["mean"], summary["worst"]
    print(f"wire F1 over {len(records)} folds: mean {mean['f1']:.4f}, worst {worst['f1']:.4f} "
          f"at argmax", end="")
    pooled = summary["threshold_for_all_photos"]
    if pooled is not None:
        print(f"; mean {mean['f1_at_threshold']:.4f}, worst {worst['f1_at_threshold']:.4f} at a "
              f"threshold picked on the other folds.\nA model trained on all these photos with "
              f"this recipe: ", end="")
        if summary["recommended_threshold"] > 0:
            print(f"WIRE.THRESHOLD {pooled['threshold']:.2f} (picked on all folds' "
                  f"held-out photos, F1 {pooled['f1']:.4f} there)", end="")
        else:
            print("WIRE.THRESHOLD argmax (a threshold picked on the other folds scored "
                  "below argmax on held-out photos, so it does not carry to a new model; "
                  f"the best on all folds was {pooled['threshold']:.2f})", end="")
    if "zoom" in summary:
        print("\nwire F1 at argmax as if the camera were closer (zoom > 1) or further (< 1):")
        print(zoom_table(summary["zoom"]), end="")
    print(f"\n{path}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The whole power-line workflow on a generated dataset, run with the real tools, on CPU.

    python tools/demo.py            # about 5-10 minutes on 2 CPU cores
    python tools/demo.py --quick    # a smoke run (CI): fewer images, one epoch

Each stage prints the exact command a user would type next, then runs it:
generate photos + platform JSON -> convert to label PNGs and lists -> train -> evaluate with
tools/test.py -> overlay predictions. The printed mIoU and wire IoU are read from the json that
tools/test.py writes, so they are what `tools/test.py` reports for the saved model.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from tools import cli

REPO = Path(__file__).resolve().parents[1]
CFG = "experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_demo.yaml"


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.tool_parser(__doc__, cfg=False, opts=False)
    p.add_argument("--quick", action="store_true", help="smoke run: 12 images, 1 epoch (for CI)")
    p.add_argument("--data", default="data/synthetic", help="where the generated dataset goes")
    p.add_argument("--output", default="output", help="OUTPUT_DIR for checkpoints and predictions")
    p.add_argument("--log", default="log", help="LOG_DIR for tensorboard and text logs")
    p.add_argument("--num", type=int, default=None, help="number of generated photos")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated dataset")
    return cli.parse(p, argv)


def from_repo(path: str) -> Path:
    """`path` (relative to the current directory) as the tools see it: they run from the repo root."""
    full = Path(path).resolve()
    return full.relative_to(REPO) if full.is_relative_to(REPO) else full


def run(stage: str, args: list[str]) -> float:
    """One stage (cli.run_stage); a failed one ends the demo: exit 2 when it was the first
    (nothing made), 1 after (the earlier stages' files stay)."""
    try:
        return cli.run_stage(stage, args, REPO)
    except cli.StageFailed as err:
        print(f"error: demo {err}", file=sys.stderr)
        sys.exit(cli.NOTHING if stage.startswith("1/") else cli.PARTLY)


def figure(photo: Path, label: Path, pred_overlay: Path, out: Path) -> None:
    """Photo | ground truth | prediction overlay, side by side, as one PNG."""
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    gt = cv2.imread(str(label), cv2.IMREAD_GRAYSCALE)
    pred = cv2.imread(str(pred_overlay), cv2.IMREAD_COLOR)
    if image is None or gt is None or pred is None:
        print(f"error: cannot read {photo}, {label} or {pred_overlay} for the figure",
              file=sys.stderr)
        sys.exit(cli.PARTLY)
    truth = image.copy()
    truth[gt > 0] = (0, 0, 255)
    pred = cv2.resize(pred, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_AREA)
    panels = [image, truth, pred]
    titles = ["photo", "label (red)", "prediction"]
    for panel, title in zip(panels, titles):
        cv2.putText(panel, title, (12, 32), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.hstack(panels))


def main(argv=None) -> int:
    args = parse_args(argv)
    num = args.num or (12 if args.quick else 48)
    data, output = from_repo(args.data), from_repo(args.output)
    raw = data / "raw"
    root = data / "daodixian_seg"
    name = Path(CFG).stem
    out_dir = output / "daodixian_seg" / name
    common = ["DATASET.ROOT", f"{data}/", "OUTPUT_DIR", str(output), "LOG_DIR", str(from_repo(args.log))]
    if args.quick:
        common += ["TRAIN.END_EPOCH", "1", "WORKERS", "0"]
    elif args.epochs:
        common += ["TRAIN.END_EPOCH", str(args.epochs)]
    times = {}

    times["generate"] = run("1/5 generate photos and one annotation-platform JSON", [
        "tools_jss/make_synthetic_daodixian.py", "--out", str(raw), "--num", str(num),
        "--seed", str(args.seed)])
    times["convert"] = run("2/5 convert the JSON polygons to label PNGs, split, write lists", [
        "tools_jss/json2lableImg_jss.py", "--input", str(raw / "annotations.json"),
        "--images", str(raw / "images"), "--out", str(root),
        "--list-dir", str(data / "list" / "daodixian_seg")])
    times["train"] = run("3/5 train HRNet-W18-Small + OCR on CPU", [
        "tools/train_daodixian_seg.py", "--cfg", CFG, *common, "TRAIN.RESUME", "False",
        "TRAIN.OVERWRITE", "True"])
    model_file = out_dir / "final_state.pth"
    times["test"] = run("4/5 evaluate the saved model with tools/test.py", [
        "tools/test.py", "--cfg", CFG, *common, "TEST.MODEL_FILE", str(model_file)])
    pred_dir = out_dir / "val_results"
    overlays = out_dir / "overlays"
    times["overlay"] = run("5/5 overlay the predictions on the photos", [
        "tools_jss/visualize.py", "--images", str(root / "val" / "images"), "--labels",
        str(pred_dir), "--out", str(overlays), "--num-classes", "2", "--min-area", "0"])

    out_dir, root = REPO / out_dir, REPO / root  # absolute from here on (a no-op when already)
    metrics = json.loads((out_dir / "test_metrics.json").read_text())
    first = sorted((root / "val" / "images").glob("*.jpg"))[0]
    fig = out_dir / "demo_prediction.png"
    figure(first, root / "val" / "annotations" / f"{first.stem}.png",
           overlays / f"{first.stem}.jpg", fig)

    iou = metrics["iou"]
    print("\n=== results (from tools/test.py)")
    print(f"mIoU      {metrics['miou']:.4f}")
    print(f"wire IoU  {iou[1]:.4f}")
    print(f"model     {model_file}")
    print(f"metrics   {out_dir / 'test_metrics.json'}")
    print(f"figure    {fig}")
    print(f"dataset   {root}  (lists in {data / 'list' / 'daodixian_seg'})")
    print("time      " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items())
          + f", total {sum(times.values()):.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))  # Ctrl-C: one line, exit 130

"""Do the exported backends keep a trained model's masks? Every fold of a cross-validation run,
its held-out real photos, PyTorch fp32 against each backend.

    python docs/benchmarks/backend_agreement.py --cv OUTPUT_DIR/daodixian_seg \\
        --cfg experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_real.yaml \\
        --folds <root>/list/daodixian_seg/folds --root <root>/ --labels <photos' label PNGs> \\
        --work /tmp/agree [--only 1,2] [--int8-keep PARTS] --json out.json

For fold k: the fold's final weights (`<cv>/<cfg name>_fold<k>/final_state.pth`) are exported by
tools/export_onnx.py --dynamic to ONNX and OpenVINO, with INT8 calibrated on 16 of the fold's
*training* photos (--int8); then tools/predict.py predicts the fold's held-out photos with each
model (whole photos, the config's test settings, labels dilated by 1 as cross_validate scores
them). A row: wire F1 of every backend and the share of mask pixels equal to PyTorch fp32's.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
# backend -> (model file suffix, KEY VALUE overrides)
BACKENDS = {
    "pytorch fp32": (".pth", ["TEST.AMP", "", "TEST.FOLD_BN", "False", "MODEL.CHANNELS_LAST", "False"]),
    "pytorch best": (".pth", ["TEST.AMP", "bf16", "TEST.FOLD_BN", "True", "MODEL.CHANNELS_LAST", "True"]),
    "onnxruntime": (".onnx", []),
    "onnxruntime int8": ("_int8.onnx", []),
    "openvino": (".xml", ["TEST.AMP", ""]),
    "openvino bf16": (".xml", ["TEST.AMP", "bf16"]),
    "openvino int8": ("_int8.xml", ["TEST.AMP", ""]),
    "openvino int8 bf16": ("_int8.xml", ["TEST.AMP", "bf16"]),
}


def photos_of(list_file: Path, root: Path) -> list[Path]:
    return [root / line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cv", type=Path, required=True, help="OUTPUT_DIR/<dataset> of cross_validate")
    p.add_argument("--cfg", required=True)
    p.add_argument("--folds", type=Path, required=True)
    p.add_argument("--root", type=Path, required=True, help="DATASET.ROOT (lists are relative to it)")
    p.add_argument("--labels", type=Path, required=True, help="folder of the photos' label PNGs")
    p.add_argument("--work", type=Path, default=Path("/tmp/agree"))
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--only", default="", help="comma-separated fold numbers (default: all)")
    p.add_argument("--int8-keep", default=None, help="tools/export_onnx.py --int8-keep")
    p.add_argument("--json", default="")
    args = p.parse_args()
    only = {int(k) for k in args.only.split(",") if k.strip()}
    keep = [] if args.int8_keep is None else ["--int8-keep", args.int8_keep]
    root = args.root / "daodixian_seg"
    name = Path(args.cfg).stem
    backends = args.backends.split(",")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        p.error(f"unknown backend(s) {unknown}; known: {list(BACKENDS)}")
    suffixes = {BACKENDS[b][0] for b in backends}  # model files the backends read
    rows = []
    for fold in sorted(args.folds.glob("fold*_val.lst")):
        k = int(re.search(r"fold(\d+)_val", fold.name).group(1))
        if only and k not in only:
            continue
        weights = args.cv / f"{name}_fold{k}" / "final_state.pth"
        work = args.work / f"fold{k}"
        (work / "val").mkdir(parents=True, exist_ok=True)
        (work / "cal").mkdir(parents=True, exist_ok=True)
        for photo in photos_of(fold, root):
            link = work / "val" / photo.name
            link.unlink(missing_ok=True)
            link.symlink_to(photo.resolve())
        for photo in photos_of(args.folds / f"fold{k}_train.lst", root)[:16]:
            link = work / "cal" / photo.name
            link.unlink(missing_ok=True)
            link.symlink_to(photo.resolve())
        (work / "model.pth").unlink(missing_ok=True)
        (work / "model.pth").symlink_to(weights.resolve())
        for fmt in (".onnx", ".xml"):  # only what the backends asked for run
            if not any(x.endswith(fmt) for x in suffixes):
                continue
            int8 = ["--int8", str(work / "cal"), *keep] if f"_int8{fmt}" in suffixes else []
            subprocess.run([sys.executable, "tools/export_onnx.py", "--cfg", args.cfg, "--output",
                            str(work / f"model{fmt}"), "--dynamic", *int8,
                            "TEST.MODEL_FILE", str(work / "model.pth")], cwd=REPO, check=True,
                           capture_output=True)
        labels = args.labels
        row = {"fold": k, "photos": len(list((work / "val").iterdir()))}
        masks = {}
        for backend in backends:
            suffix, opts = BACKENDS[backend]
            out = work / ("out_" + backend.replace(" ", "_"))
            proc = subprocess.run(
                [sys.executable, "tools/predict.py", "--cfg", args.cfg, "--input",
                 str(work / "val"), "--output", str(out), "--overwrite", "--device", "cpu",
                 "--labels", str(labels), "--label-dilate", "1",
                 "TEST.MODEL_FILE", str(work / f"model{suffix}"), *opts],
                cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                row[backend] = {"error": proc.stderr.strip()[-300:]}
                continue
            f1 = float(re.search(r"F1 ([\d.]+)", proc.stdout).group(1))
            masks[backend] = {m.name: cv2.imread(str(m), cv2.IMREAD_UNCHANGED)
                              for m in sorted((out / "masks").glob("*.png"))}
            row[backend] = {"f1": f1}
        reference = masks.get("pytorch fp32", {})
        for backend, found in masks.items():
            equal = sum(int((found[n] == reference[n]).sum()) for n in reference)
            total = sum(reference[n].size for n in reference)
            row[backend]["mask_equal"] = equal / total if total else None
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {b: {"worst_f1_gap": max(abs(r[b]["f1"] - r["pytorch fp32"]["f1"]) for r in rows
                                       if "f1" in r.get(b, {})),
                   "min_mask_equal": min(r[b]["mask_equal"] for r in rows
                                         if r.get(b, {}).get("mask_equal") is not None)}
               for b in backends if all("f1" in r.get(b, {}) for r in rows)}
    result = {"command": " ".join(sys.argv), "rows": rows, "summary": summary}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())

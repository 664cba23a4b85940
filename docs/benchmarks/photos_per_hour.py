"""Photos per hour and peak memory of tools/predict.py on one 5472x3078 photo, every backend.

    python docs/benchmarks/photos_per_hour.py --work /tmp/pph [--models w18s,w48]
        [--backends fp32,best,onnxruntime,onnxruntime_int8,openvino,openvino_bf16,openvino_int8]
        [--weights w18s=fold1.pth] [--photos 3] [--multiscale] [--json out.json]

Each row is one `tools/predict.py` process on --photos copies of the photo (a campaign in small)
at native resolution (TEST.TILE_SIZE 1024x1024, overlap 256, TILE_SCALE 1.0), one scale and no
flip, or with --multiscale the scales 0.5, 0.75, 1.0 and flip (the memory case). `photo_s` is a
photo's time in a campaign, the mean of the photos after the first (each photo's own seconds in
summary.csv: decoding, tiles, mask, overlay, polygons), and `photos_per_hour` comes from it;
`first_photo_s` is the first photo's, which holds the backend's warm-up (with --photos 1 it is
all there is); `predict_s` the tool's time for all of them (model loading and start-up not
included), `wall_s` the whole process, `peak_rss_mb` the
process's peak resident set (GNU time's %M), `wire_percent` the share of the photo's mask
marked wire. The network's time does not depend on the weights, the masks' post-processing
(polygons, overlay) does: a mask full of wire costs seconds a photo more. Weights are calibrated
random ones drawn from a fixed seed, so every run and machine predicts the same masks, or a
trained model's (--weights MODEL=FILE.pth, weights for that model's yaml, loaded strictly); the INT8 models
calibrate on the photo itself. The --work folder keeps each model's weights, exports and the photo for
the next run, named by the weights they came from (the seed, or a trained file's path and time).
Rows run one at a time: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
CFG = {"w18s": "experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_real.yaml",
       "w48": "experiments/daodixian_seg/seg_hrnet_ocr_w48_epoch48_1209.yaml"}
# backend -> (model file suffix, KEY VALUE overrides)
BACKENDS = {
    "fp32": (".pth", ["TEST.AMP", "", "TEST.FOLD_BN", "False", "MODEL.CHANNELS_LAST", "False"]),
    "best": (".pth", ["TEST.AMP", "bf16", "TEST.FOLD_BN", "True", "MODEL.CHANNELS_LAST", "True"]),
    "onnxruntime": (".onnx", []),
    "onnxruntime_int8": ("_int8.onnx", []),
    "openvino": (".xml", ["TEST.AMP", ""]),
    "openvino_bf16": (".xml", ["TEST.AMP", "bf16"]),
    "openvino_int8": ("_int8.xml", ["TEST.AMP", ""]),
    "openvino_int8_bf16": ("_int8.xml", ["TEST.AMP", "bf16"]),
}


def machine() -> str:
    """The CPU the rows ran on (lib.core.benchmark.cpu_description)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from lib.core.benchmark import cpu_description
    return cpu_description()


def stem(model: str, weights: dict[str, str]) -> str:
    """The name of a model's files in the work folder, so that a folder's files are reused only
    for the same weights: the random ones by their seed, a trained file by its path and time."""
    if model not in weights:
        return f"{model}_random_seed0"
    path = Path(weights[model]).resolve()
    key = f"{path}:{path.stat().st_mtime_ns if path.exists() else 0}"
    return f"{model}_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def prepare(work: Path, models: list[str], backends: list[str], weights: dict[str, str]) -> None:
    """The weights (calibrated random ones from seed 0, or trained ones), the photo, and the
    exported models the backends need."""
    photo = work / "photo" / "p.jpg"
    script = f"""
import torch
from pathlib import Path
from lib.config import get_config
from lib.core import benchmark as bm
from lib.models import get_seg_model, load_weights
work = Path({str(work)!r})
trained = {weights!r}
for name, cfg in {dict((m, CFG[m]) for m in models)!r}.items():
    out = work / ({dict((m, stem(m, weights)) for m in models)!r}[name] + ".pth")
    if out.is_file():
        continue
    model = get_seg_model(get_config(cfg, []), load_pretrained=False)
    if name in trained:
        load_weights(model, trained[name], strict=True)  # our files or a bare state dict
    else:
        torch.manual_seed(0)
        bm.calibrate(model)
    torch.save(model.state_dict(), out)
if not Path({str(photo)!r}).is_file():
    Path({str(photo.parent)!r}).mkdir(parents=True, exist_ok=True)
    bm.write_test_photo({str(photo)!r}, 3078, 5472)
"""
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True)
    for m in models:
        name = stem(m, weights)
        for fmt, needed in ((".onnx", ("onnxruntime", "onnxruntime_int8")),
                            (".xml", ("openvino", "openvino_bf16", "openvino_int8",
                                      "openvino_int8_bf16"))):
            wanted = [b for b in backends if b in needed]
            if not wanted or (work / f"{name}{fmt}").is_file():
                continue
            int8 = ["--int8", str(photo.parent)] if any("int8" in b for b in wanted) else []
            subprocess.run([sys.executable, "tools/export_onnx.py", "--cfg", CFG[m], "--output",
                            str(work / f"{name}{fmt}"), "--dynamic", "--height", "1024", "--width",
                            "1024", *int8, "--no-check", "TEST.MODEL_FILE", str(work / f"{name}.pth")],
                           cwd=REPO, check=True)


def campaign(work: Path, photos: int) -> Path:
    """A folder of `photos` copies of the photo (hard links): a campaign in small, so that the
    steady time of a photo is seen apart from the first one's warm-up."""
    folder = work / f"campaign_{photos}"
    folder.mkdir(exist_ok=True)
    for k in range(photos):
        copy = folder / ("p.jpg" if k == 0 else f"p_{k + 1}.jpg")
        if not copy.is_file():
            os.link(work / "photo" / "p.jpg", copy)
    return folder


def run(work: Path, model: str, backend: str, multiscale: bool, weights: dict[str, str],
        photos: int = 1) -> dict:
    suffix, opts = BACKENDS[backend]
    scales = ["TEST.SCALE_LIST", "[0.5, 0.75, 1.0]", "TEST.FLIP_TEST", "True"] if multiscale \
        else ["TEST.SCALE_LIST", "[1.0]", "TEST.FLIP_TEST", "False"]
    scales += ["TEST.SCALE_FUSE", "sum"]  # the tables' fusion, whatever the yaml asks
    out = work / f"out_{model}_{backend}{'_ms' if multiscale else ''}"
    cmd = ["/usr/bin/time", "-f", "peak_rss_kb=%M", sys.executable, "tools/predict.py",
           "--cfg", CFG[model], "--input", str(campaign(work, photos)), "--output", str(out),
           "--overwrite", "--device", "cpu", "TEST.MODEL_FILE",
           str(work / f"{stem(model, weights)}{suffix}"),
           "TEST.TILE_SIZE", "[1024, 1024]", "TEST.TILE_OVERLAP", "256", "TEST.TILE_SCALE", "1.0",
           *scales, *opts]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"model": model, "backend": backend, "error": proc.stderr.strip()[-500:]}
    seconds = float(re.search(r"skipped \d+ in ([\d.]+) s", proc.stdout).group(1))
    with open(out / "summary.csv", newline="") as f:  # each photo's own seconds, in order
        each = [float(r["seconds"]) for r in sorted(csv.DictReader(f), key=lambda r: r["photo"])]
    first = each[0]  # p.jpg sorts first
    steady = sum(each[1:]) / (len(each) - 1) if len(each) > 1 else first
    rss = int(re.search(r"peak_rss_kb=(\d+)", proc.stderr).group(1)) / 1024
    mask = cv2.imread(str(out / "masks" / "p.png"), cv2.IMREAD_UNCHANGED)
    return {"model": model, "backend": backend, "photo": "5472x3078",
            "weights": weights.get(model, "random, seed 0"),
            "wire_percent": round(100 * float((mask > 0).mean()), 2),
            "scales": "0.5,0.75,1.0 + flip" if multiscale else "1.0",
            "photos": len(each), "predict_s": round(seconds, 1), "first_photo_s": round(first, 2),
            "photo_s": round(steady, 2), "wall_s": round(wall, 1),
            "photos_per_hour": round(3600 / steady, 1), "peak_rss_mb": round(rss)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/pph")
    p.add_argument("--models", default="w18s,w48")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--weights", default="",
                   help="MODEL=FILE.pth[,MODEL=FILE.pth]: trained weights instead of random ones")
    p.add_argument("--multiscale", action="store_true")
    p.add_argument("--photos", type=int, default=3,
                   help="copies of the photo each row predicts (default 3): photos_per_hour "
                        "from the ones after the first, whose time holds the warm-up")
    p.add_argument("--json", default="")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models, backends = args.models.split(","), args.backends.split(",")
    weights = {}
    for item in filter(None, args.weights.split(",")):
        model, _, path = item.partition("=")
        if model not in CFG or not Path(path).is_file():
            p.error(f"--weights {item}: expected MODEL=FILE with MODEL one of {', '.join(CFG)} "
                    "and FILE an existing state dict")
        weights[model] = str(Path(path).resolve())
    prepare(work, models, backends, weights)
    rows = []
    for m in models:
        for b in backends:
            rows.append(run(work, m, b, args.multiscale, weights, args.photos))
            print(json.dumps(rows[-1]), flush=True)
    result = {"machine": machine(), "command": " ".join(sys.argv), "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

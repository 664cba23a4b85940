"""Speed and memory of the fast paths, side by side: prints a table and writes a json file.

  python tools/benchmark.py --cfg X --what infer --input-size 512x1024 --batch 1 --json out.json
  --what infer   eval forward passes (images/s, argmax agreement with fp32 eager); also
                 --variants onnxruntime,"onnxruntime int8",openvino,"openvino bf16",
                 "openvino int8","openvino int8 bf16" [--calibrate photos/] (exported on the fly);
                 an INT8 variant + " keep=a+b" leaves layers a, b unquantised (export_onnx.py
                 --int8-keep; "keep=none": every layer INT8), so keep sets are timed side by side
                 --weights trained.pth --photo real.jpg: agreement on a trained model's real scene
  --what train   SGD steps: forward, loss, backward, step
  --what data    one worker decoding a photo at the training's random scales, three ways,
                 and whole training samples: uncached, DATASET.CACHE_DIR cold and warm
  --what photo   whole-photo multi-scale (+flip) inference of a 5472x3078 photo, peak memory
                 (exported variants too; one variant per run gives each backend's own peak)

Rows are medians of --runs timed calls after --warmup untimed ones. Exit status: 0 done, 2
nothing measured (bad input, one line on stderr). Without weights (--weights
or MODEL.PRETRAINED) the model gets calibrated random weights (lib.core.benchmark.calibrate).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import torch

from lib.config import get_config
from lib.core import benchmark as bm
from lib.core.export import calibration_images
from lib.datasets.base import normalise
from lib.datasets.decode import decode_image
from lib.models import get_seg_model, load_trained, load_weights
from lib.utils.atomic import write_text_atomic
from lib.utils.runtime import configure_backends, resolve_device
from tools import cli

DEFAULT_VARIANTS = {"infer": bm.INFER_VARIANTS, "train": bm.TRAIN_VARIANTS,
                    "photo": bm.PHOTO_VARIANTS, "data": ()}


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 512x1024), got {text!r}") from None
    return h, w


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.tool_parser(__doc__)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--what", choices=["infer", "train", "data", "photo"], default="infer")
    p.add_argument("--input-size", type=parse_size, default=(512, 1024), help="HxW (infer, train)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=3, help="timed calls per row (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (incl. compiling)")
    p.add_argument("--variants", default="", help="comma-separated variant names (default: all for --what)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--weights", default="", help="state dict to load (default: MODEL.PRETRAINED or calibrated random)")
    p.add_argument("--photo", default="", help="JPEG for data/photo (default: a generated 5472x3078 "
                   "one); infer: the input, resized to --input-size (default: a random field)")
    p.add_argument("--photo-size", type=parse_size, default=(3078, 5472), help="HxW of the generated photo")
    p.add_argument("--scales", default="0.5,0.75,1.0", help="photo: inference scales")
    p.add_argument("--no-flip", action="store_true", help="photo: no flip averaging")
    p.add_argument("--window-batch", type=int, default=0, help="photo: windows per forward (0: TEST.WINDOW_BATCH)")
    p.add_argument("--samples", type=int, default=20, help="data: decodes per way")
    p.add_argument("--json", default="", help="write the rows and the environment here")
    p.add_argument("--calibrate", default="", help="infer, the int8 variants: folder of photos "
                   "to calibrate the quantisation on (default: 8 photo-like random images)")
    return cli.parse(p, argv)


def build_model(cfg, weights: str, device: torch.device) -> tuple[torch.nn.Module, str]:
    if weights:  # a trained model: every tensor, as every tool loads one
        return load_trained(cfg, weights).to(device).eval(), weights
    model = get_seg_model(cfg, load_pretrained=False)
    source = cfg.MODEL.PRETRAINED
    if source and not Path(source).is_file():
        # benchmarking needs no trained weights: a missing backbone file is not an error here
        logging.getLogger("benchmark").warning(
            "MODEL.PRETRAINED %s not found: benchmarking calibrated random weights", source
        )
        source = ""
    if source:  # MODEL.PRETRAINED: a backbone, reported
        load_weights(model, source)
        description = source
    else:
        bm.calibrate(model)
        description = "calibrated random (He-initialised convs, BN statistics from 3 passes)"
    return model.to(device).eval(), description


def run(args: argparse.Namespace) -> dict:
    cfg = get_config(args.cfg, args.opts)
    device = resolve_device(args.device)
    configure_backends(cfg)  # cudnn.benchmark as the experiment file says
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, cfg, device)
    finally:
        torch.set_num_threads(threads)  # main() may run inside a larger process (tests)


def _run(args: argparse.Namespace, cfg, device: torch.device) -> dict:
    memory = bm.PeakMemory(device)
    names = [v for v in args.variants.split(",") if v.strip()] or list(DEFAULT_VARIANTS[args.what])
    variants = [bm.parse_variant(v) for v in names]
    result = {"what": args.what, "cfg": args.cfg, **bm.environment(device),
              "peak_mem_method": memory.method, "runs": args.runs, "warmup": args.warmup}
    rows: list[dict] = []
    tmp = tempfile.TemporaryDirectory()

    def photo_path() -> Path:
        if args.photo:
            return Path(args.photo)
        return bm.write_test_photo(Path(tmp.name) / "photo.jpg", *args.photo_size)

    if args.what == "data":
        path = photo_path()
        rows = bm.bench_decode(path, cfg.TRAIN.BASE_SIZE, cfg.TRAIN.SCALE_FACTOR, args.samples, memory)
        sample_rows, cache_bytes = bm.bench_samples(path, cfg, args.samples, memory, Path(tmp.name))
        rows += sample_rows
        result.update(photo=str(path), photo_bytes=path.stat().st_size, base_size=cfg.TRAIN.BASE_SIZE,
                      crop=list(cfg.TRAIN.IMAGE_SIZE), cache_bytes_per_photo=cache_bytes)
    else:
        model, result["weights"] = build_model(cfg, args.weights, device)
        h, w = args.input_size
        result.update(input_size=[args.batch, 3, h, w])
        if args.what == "infer" and args.photo:  # agreement on a real scene, not a random field
            x = normalise(decode_image(args.photo, size=(w, h)))[None].repeat(args.batch, 1, 1, 1).to(device)
            result.update(photo=str(args.photo))
        else:
            x = bm.random_image(args.batch, h, w).to(device)
        target = torch.randint(0, cfg.DATASET.NUM_CLASSES, (args.batch, h, w), device=device)
        if args.what == "photo":
            path = photo_path()
            image = normalise(decode_image(path))[None]
            result.update(input_size=list(image.shape), photo=str(path))
            scales = [float(s) for s in args.scales.split(",")]
            window_batch = args.window_batch or cfg.TEST.WINDOW_BATCH
            result.update(scales=scales, flip=not args.no_flip, window_batch=window_batch)

        calibration = None
        if args.calibrate and any(v.int8 for v in variants):
            calibration = calibration_images(args.calibrate, *args.input_size)

        def factory(variant: bm.Variant):
            if args.what == "infer":
                return lambda: bm.infer_case(model, variant, x, calibration)
            if args.what == "train":
                return lambda: bm.train_case(model, cfg, variant, x, target)
            return lambda: bm.photo_case(model, cfg, variant, image, scales, not args.no_flip,
                                         window_batch)

        rows = bm.measure([(v.name, factory(v)) for v in variants], args.runs, args.warmup,
                          memory, agreement=args.what == "infer")
    tmp.cleanup()
    base = rows[0]["images_per_s"] if rows else None
    for row in rows:
        row["speedup"] = row["images_per_s"] / base if base and row["images_per_s"] else None
    result["rows"] = rows
    return result


def table(result: dict) -> str:
    """The rows as a plain-text table, environment first."""
    features = ", ".join(result.get("cpu_features", [])) or "no AMX/AVX-512 listed"
    head = (f"{result['what']} on {result['device']} ({result['device_name']}; {features}), torch "
            f"{result['torch']}, {result['threads']} threads; peak memory: {result['peak_mem_method']}")
    lines = [head, f"{'variant':<40} {'images/s':>9} {'latency ms':>11} {'peak MB':>9} "
                   f"{'speedup':>8} {'argmax':>8}"]
    for r in result["rows"]:
        if r.get("skipped"):
            lines.append(f"{r['variant']:<40} skipped: {r['skipped']}")
            continue
        agree = f"{100 * r['argmax_agree']:.2f}%" if "argmax_agree" in r else ""
        peak = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "-"
        speed = f"{r['speedup']:.2f}x" if r["speedup"] else ""
        name = r["variant"] + (f" [ran {r['ran_as']}]" if r.get("ran_as") else "")
        lines.append(f"{name:<40} {r['images_per_s']:>9.3f} {r['latency_ms']:>11.1f} "
                     f"{peak:>9} {speed:>8} {agree:>8}")
    return "\n".join(lines)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)

    def work() -> None:
        result = run(args)
        print(table(result))
        if args.json:
            write_text_atomic(args.json, json.dumps(result, indent=2), "the benchmark json")

    return cli.run(work)


if __name__ == "__main__":
    sys.exit(main())

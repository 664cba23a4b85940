"""Predict wire masks for photos at native resolution: masks, overlays, summaries, pre-annotations.

    python tools/predict.py --cfg experiments/daodixian_seg/X.yaml --input photos/ \
        --output out/ TEST.MODEL_FILE output/.../best.pth [KEY VALUE ...]

--input takes photos, folders (recursive) and list files (.txt/.lst). Photos with a summary in
--output are skipped (resume) unless --overwrite. With --labels, photos with a label PNG of the
same relative name are scored (wire precision / recall / F1 at TEST.WIRE_TOLERANCE, clDice).
Tiling: TEST.TILE_SIZE, TILE_OVERLAP, TILE_BATCH, TILE_SCALE; TEST.SCALE_LIST and FLIP_TEST as
in test.py. Exit status: 0 all photos done, 1 some skipped (unreadable), 2 nothing could be done.
"""

from __future__ import annotations

import argparse
import logging
import sys

from lib.config import ConfigError, get_config
from lib.core.prediction import list_photos, predict_photos
from lib.models import WeightsError, get_seg_model, load_weights
from lib.models.fusion import prepare_for_inference
from lib.utils.amp import configure_backends, resolve_device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", required=True, help="experiment yaml file")
    parser.add_argument("--input", required=True, nargs="+", help="photos, folders or list files")
    parser.add_argument("--output", required=True, help="folder for masks/, overlays/, summaries/")
    parser.add_argument("--labels", default=None, help="folder of label PNGs to score against")
    parser.add_argument(
        "--label-dilate",
        type=int,
        default=0,
        help="dilate label wires by this many pixels (1-px labels; default 0)",
    )
    parser.add_argument("--overwrite", action="store_true", help="predict photos already done")
    parser.add_argument(
        "--device", default="", help="cpu | cuda | cuda:N (default: cuda if available)"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        cfg = get_config(args.cfg, args.opts)
        if not cfg.TEST.MODEL_FILE:
            raise ConfigError("TEST.MODEL_FILE is empty: give the trained weights to predict with")
        photos = list_photos(args.input, exclude=args.output)
        if not photos:
            raise FileNotFoundError(f"no photos found in {' '.join(args.input)}")
        device = resolve_device(args.device)
        configure_backends(cfg)  # CUDNN.BENCHMARK etc. of the experiment file
        model = get_seg_model(cfg, load_pretrained=False)
        load_weights(model, cfg.TEST.MODEL_FILE, strict=True)  # trained weights: every tensor
        model = prepare_for_inference(model, cfg, device)
        report = predict_photos(
            model,
            cfg,
            photos,
            args.output,
            overwrite=args.overwrite,
            labels=args.labels,
            label_dilate=args.label_dilate,
        )
    except (ConfigError, WeightsError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    for reason in report.skipped:
        print(f"  skipped: {reason}")
    return 1 if report.skipped else 0


if __name__ == "__main__":
    sys.exit(main())

"""Export a trained model to ONNX (eval, BatchNorm folded) and check it against PyTorch.

    python tools/export_onnx.py --cfg experiments/daodixian_seg/X.yaml --output model.onnx \\
        [--height 1024 --width 1024] [--dynamic] [--upsample] TEST.MODEL_FILE best.pth

The check runs ONNX Runtime and PyTorch on a random normalised image (and, with --dynamic, on a
second size too) and prints the largest absolute difference. Exit status: 0 exported and within
--tolerance, 1 exported but above it, 2 nothing exported (bad options or weights,
onnx/onnxruntime missing; one line on stderr).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

from lib.config import ConfigError, get_config
from lib.core.export import (
    calibration_images,
    export_onnx,
    onnx_max_abs_diff,
    quantize_int8,
    require_onnx,
)
from lib.models import load_trained
from tools import cli


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument("--output", required=True, help="ONNX file to write")
    parser.add_argument(
        "--height", type=int, default=0, help="input height (default: TEST.IMAGE_SIZE)"
    )
    parser.add_argument(
        "--width", type=int, default=0, help="input width (default: TEST.IMAGE_SIZE)"
    )
    parser.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    parser.add_argument("--upsample", action="store_true", help="output at input size, not 1/4")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--tolerance", type=float, default=1e-3, help="largest allowed |ONNX - PyTorch|"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison")
    parser.add_argument(
        "--int8", default="", metavar="PHOTOS",
        help="also write <output>_int8.onnx: INT8 static quantisation calibrated on up to 16 "
        "photos of this folder (at the export size; needs --dynamic or a fixed size)",
    )
    return cli.parse(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    return cli.run(lambda: export(args))


def export(args) -> int:
    """Export, then compare with ONNX Runtime: DONE, or PARTLY when above --tolerance."""
    require_onnx("onnx") if args.no_check else require_onnx()
    cfg = get_config(args.cfg, args.opts)
    if not cfg.TEST.MODEL_FILE:
        raise ConfigError("TEST.MODEL_FILE is empty: give the trained weights to export")
    height = args.height or cfg.TEST.IMAGE_SIZE[1]
    width = args.width or cfg.TEST.IMAGE_SIZE[0]
    head = export_onnx(
        load_trained(cfg, cfg.TEST.MODEL_FILE),
        args.output,
        height=height,
        width=width,
        dynamic=args.dynamic,
        opset=args.opset,
        output_index=cfg.TEST.OUTPUT_INDEX,
        upsample=args.upsample,
        align_corners=cfg.MODEL.ALIGN_CORNERS,
    )
    print(f"wrote {args.output} ({height}x{width}{', dynamic' if args.dynamic else ''})")
    if args.int8:
        int8 = Path(args.output).with_name(Path(args.output).stem + "_int8.onnx")
        quantize_int8(Path(args.output), int8, calibration_images(args.int8, height, width))
        print(f"wrote {int8} (INT8, calibrated on {args.int8})")
    if args.no_check:
        return cli.DONE
    sizes = [(height, width)] + ([(height + 32, max(32, width - 32))] if args.dynamic else [])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for h, w in sizes:
        diff = onnx_max_abs_diff(args.output, head, torch.randn(1, 3, h, w, generator=generator))
        print(f"max abs difference ONNX Runtime vs PyTorch at {h}x{w}: {diff:.3g}")
        worst = max(worst, diff)
    if worst > args.tolerance:
        print(f"error: difference {worst:.3g} above the tolerance {args.tolerance:g}",
              file=sys.stderr)
        return cli.PARTLY
    return cli.DONE


if __name__ == "__main__":
    sys.exit(main())

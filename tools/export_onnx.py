"""Export a trained model to ONNX or OpenVINO (eval, BatchNorm folded) and check it against PyTorch.

    python tools/export_onnx.py --cfg experiments/daodixian_seg/X.yaml --output model.onnx \\
        [--height 1024 --width 1024] [--dynamic] [--upsample] [--int8 photos/] TEST.MODEL_FILE best.pth
    python tools/export_onnx.py --cfg X.yaml --output model.xml --dynamic [--int8 photos/] \\
        TEST.MODEL_FILE best.pth            (OpenVINO: an --output ending in .xml, or --openvino)

ONNX (ONNX Runtime): writes model.onnx, and with --int8 model_int8.onnx (static QDQ INT8).
OpenVINO: writes model.onnx (the same graph), model.xml + model.bin converted from it (fp32
weights), and with --int8 model_int8.xml + .bin (NNCF post-training INT8). INT8 calibrates on up
to 16 photos of the folder, resized to the export size (give photos like the ones to predict);
the OCR head's attention and the two classifiers stay unquantised (--int8-keep names what stays). Give any of these
files to tools/predict.py, test.py or benchmark.py as TEST.MODEL_FILE (export with --dynamic for
tiles of any size).

The check runs the runtime (ONNX Runtime, or OpenVINO in fp32) and PyTorch on a random
normalised image (and, with --dynamic, on a second size too) and prints the largest absolute
difference. Exit status: 0 exported and within --tolerance, 1 exported but above it, 2 nothing
exported (bad options or weights, a runtime missing; one line on stderr).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import logging
import sys
from pathlib import Path

import torch

from lib.config import ConfigError, get_config
from lib.core.backends import require
from lib.core.export import (
    KEEP_FP32,
    calibration_images,
    export_onnx,
    export_openvino,
    quantize_int8,
    quantize_openvino,
    runtime_max_abs_diff,
)
from lib.core.thresholds import threshold_file
from lib.models import load_trained
from lib.utils.atomic import write_text_atomic
from tools import cli


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument(
        "--output", required=True, help="model.onnx (ONNX Runtime) or model.xml (OpenVINO) to write"
    )
    parser.add_argument(
        "--openvino", action="store_true",
        help="write an OpenVINO model (<output stem>.xml/.bin) beside the ONNX graph",
    )
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
        "--tolerance", type=float, default=1e-3, help="largest allowed |runtime - PyTorch|"
    )
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    parser.add_argument(
        "--int8", default="", metavar="PHOTOS",
        help="also write <output stem>_int8.onnx (ONNX Runtime) or _int8.xml (OpenVINO, NNCF): "
        "INT8 calibrated on up to 16 photos of this folder, resized to the export size",
    )
    parser.add_argument(
        "--int8-keep", default=",".join(KEEP_FP32), metavar="PARTS",
        help="comma-separated parts of layer names that INT8 leaves unquantised (default "
        f"'{','.join(KEEP_FP32)}': the OCR head's attention and the two classifiers; '' quantises "
        "everything)",
    )
    return cli.parse(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    return cli.run(lambda: export(args))


def export(args) -> int:
    """Export, then compare the runtime with PyTorch: DONE, or PARTLY when above --tolerance."""
    output = Path(args.output)
    openvino = args.openvino or output.suffix.lower() == ".xml"
    if output.suffix.lower() not in (".onnx", ".xml"):
        raise ValueError(f"--output {output}: name a .onnx (ONNX Runtime) or .xml (OpenVINO) file")
    if openvino:
        require("onnx", "openvino", *(["nncf"] if args.int8 else []))
    else:
        require("onnx", *([] if args.no_check and not args.int8 else ["onnxruntime"]))
    onnx_file = output.with_suffix(".onnx")
    cfg = get_config(args.cfg, args.opts)
    if not cfg.TEST.MODEL_FILE:
        raise ConfigError("TEST.MODEL_FILE is empty: give the trained weights to export")
    height = args.height or cfg.TEST.IMAGE_SIZE[1]
    width = args.width or cfg.TEST.IMAGE_SIZE[0]
    head = export_onnx(
        load_trained(cfg, cfg.TEST.MODEL_FILE),
        onnx_file,
        height=height,
        width=width,
        dynamic=args.dynamic,
        opset=args.opset,
        output_index=cfg.TEST.OUTPUT_INDEX,
        upsample=args.upsample,
        align_corners=cfg.MODEL.ALIGN_CORNERS,
    )
    shape = f"{height}x{width}{', dynamic' if args.dynamic else ''}"
    print(f"wrote {onnx_file} ({shape})")
    model_file = onnx_file
    if openvino:
        model_file = export_openvino(onnx_file, output.with_suffix(".xml"))
        print(f"wrote {model_file} and {model_file.with_suffix('.bin').name} (OpenVINO, {shape})")
    if args.int8:
        calibration = calibration_images(args.int8, height, width)
        int8 = model_file.with_name(model_file.stem + "_int8" + model_file.suffix)
        quantize = quantize_openvino if openvino else quantize_int8
        keep = tuple(part.strip() for part in args.int8_keep.split(",") if part.strip())
        quantize(model_file, int8, calibration, keep_fp32=keep)
        kept = f"; {', '.join(keep)} unquantised" if keep else "; every layer quantised"
        print(f"wrote {int8} (INT8, calibrated on {len(calibration)} photos of {args.int8}{kept})")
    written = [onnx_file, *([model_file] if openvino else []), *([int8] if args.int8 else [])]
    _carry_threshold(cfg.TEST.MODEL_FILE, written)
    if args.no_check:
        return cli.DONE
    sizes = [(height, width)] + ([(height + 32, max(32, width - 32))] if args.dynamic else [])
    generator = torch.Generator().manual_seed(0)
    runtime = "OpenVINO (fp32)" if openvino else "ONNX Runtime"
    worst = 0.0
    for h, w in sizes:
        diff = runtime_max_abs_diff(model_file, head, torch.randn(1, 3, h, w, generator=generator))
        print(f"max abs difference {runtime} vs PyTorch at {h}x{w}: {diff:.3g}")
        worst = max(worst, diff)
    if worst > args.tolerance:
        print(f"error: difference {worst:.3g} above the tolerance {args.tolerance:g}",
              file=sys.stderr)
        return cli.PARTLY
    return cli.DONE


def _carry_threshold(weights: str, exported: list[Path]) -> None:
    """The wire threshold picked for the weights (tools/pick_threshold.py), if any, goes with
    every exported model, so that predict and test decide as they did with the weights."""
    source = threshold_file(weights)
    if not source.is_file():
        return
    text = source.read_text(encoding="utf-8")
    for model in exported:
        write_text_atomic(threshold_file(model), text, what="the wire threshold")
    print(f"copied {source.name} beside the exported models (run tools/pick_threshold.py with "
          "an INT8 model as TEST.MODEL_FILE to pick its own)")


if __name__ == "__main__":
    sys.exit(main())

"""Predict wire masks for photos at native resolution: masks, overlays, summaries, pre-annotations.

    python tools/predict.py --cfg experiments/daodixian_seg/X.yaml --input photos/ \\
        --output out/ TEST.MODEL_FILE output/.../best.pth [KEY VALUE ...]
    torchrun --nproc_per_node=N [--nnodes M ...] tools/predict.py ...   (the same arguments)

TEST.MODEL_FILE may be an exported model of tools/export_onnx.py --dynamic, run on the CPU: an
.onnx file by ONNX Runtime, an .xml file (fp32 or _int8) by OpenVINO, whose layers outside INT8
run in the precision TEST.AMP names ('' fp32, bf16). TEST.FOLD_BN and channels_last do not
apply to them (lib/core/backends.py). Several weights files
separated by commas (TEST.MODEL_FILE a.pth,b.pth,c.pth) predict with the mean of the models'
probabilities (an ensemble, lib/models/ensemble.py).

Under torchrun the photos are shared between the processes (one per GPU, or CPU processes that
divide this machine's cores between them); each process writes only its own photos' files, and
the merged summary.csv and preannotations.json are those of a one-process run. Give several
machines one --output folder on a shared disk.

--input takes photos, folders (recursive) and list files (.txt/.lst). Photos with a summary in
--output are skipped (resume) unless --overwrite. With --labels, photos with a label PNG of the
same relative name are scored (wire precision / recall / F1 at WIRE.TOLERANCE_*, clDice).
Tiling: TEST.TILE_SIZE, TILE_OVERLAP, TILE_BATCH, TILE_SCALE; TEST.SCALE_LIST and FLIP_TEST as
in test.py. Exit status: 0 all photos done, 1 some skipped (each named), 2 nothing done (bad
input, one line on stderr), 130 interrupted (a rerun continues where it stopped).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import logging
import sys

import torch

from lib.config import ConfigError, get_config
from lib.core.backends import inference_model
from lib.core.prediction import list_photos, predict_photos
from lib.utils.distributed import broadcast_from_main, get_rank, init_distributed
from lib.utils.logs import error_line
from lib.utils.runtime import configure_backends, cpu_threads_per_process, resolve_device
from tools import cli


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
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
    return cli.parse(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    return cli.run(
        lambda: predict_all(args),
        interrupted=lambda: f"interrupted: the photos finished so far are in {args.output}; run "
        "the same command again to predict the others",
    )


def predict_all(args) -> int:
    """Predict every photo; DONE, or PARTLY when some were skipped (each one named)."""
    cfg = get_config(args.cfg, args.opts)
    if not cfg.TEST.MODEL_FILE:
        raise ConfigError("TEST.MODEL_FILE is empty: give the trained weights to predict with")
    device = resolve_device(args.device)
    # torchrun: join, take a GPU each; a plain process keeps the GPU --device names
    info = init_distributed(use_cuda=device.type == "cuda", cuda_index=device.index)
    if info.distributed:
        if not info.is_main:  # one copy of the INFO lines; warnings and errors from every rank
            logging.getLogger().setLevel(logging.WARNING)
        device = info.device
        if device.type == "cpu":
            torch.set_num_threads(cpu_threads_per_process())
    photos = photos_listed_on_main(args.input, args.output)
    configure_backends(cfg)  # CUDNN.BENCHMARK etc. of the experiment file
    model = inference_model(cfg, cfg.TEST.MODEL_FILE, device)  # PyTorch, ONNX Runtime, OpenVINO
    report = predict_photos(
        model,
        cfg,
        photos,
        args.output,
        overwrite=args.overwrite,
        labels=args.labels,
        label_dilate=args.label_dilate,
    )
    if info.is_main:
        for line in report.lines():
            print(line)
        for reason in report.skipped:
            print(f"  skipped: {reason}")
    return cli.PARTLY if report.skipped else cli.DONE


def photos_listed_on_main(inputs: list[str], output: str) -> list:
    """The photos, listed by rank 0 and handed to every rank: nodes may see a folder
    differently (photos still being copied in, a network folder's cache), and shards of
    different lists would overlap or miss photos. A listing error stops every rank."""
    listed = None
    if get_rank() == 0:
        try:
            listed = ("photos", list_photos(inputs, exclude=output))
        except (OSError, ValueError) as err:
            listed = ("error", f"{type(err).__name__}", error_line(err))
    kind, *value = broadcast_from_main(listed)
    if kind == "error":
        raise (FileNotFoundError if value[0] == "FileNotFoundError" else ValueError)(value[1])
    if not value[0]:
        raise FileNotFoundError(f"no photos found in {' '.join(inputs)}")
    return value[0]


if __name__ == "__main__":
    sys.exit(main())

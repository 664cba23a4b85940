"""Pre-train a network on generated power-line photos, once: the start the real-photo recipe fine-tunes.

    python tools/pretrain_on_generated.py      # about 23 minutes on 2 cores of a Xeon with AMX
    python tools/train_daodixian_seg.py --cfg experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_real.yaml \\
        MODEL.PRETRAINED pretrained_models/seg_hrnet_ocr_w18_small_v1_real_generated_canopy.pth ...

Generates --num photos of one generator style (tools_jss/make_synthetic_daodixian.py, default
2560 `canopy` photos of 540x360: aerial scenes with 1.5-5 px wires among foliage and branches),
converts their labels (tools_jss/json2lableImg_jss.py), trains --cfg on them for --epochs epochs
(tools/train.py, no time budget) and writes the final weights to --out. Each stage prints the
command it runs. The generated photos and the training stay in --data: run the same command
again after an interruption and it goes on from there (photos already generated with the same
settings are kept, the training resumes from its last checkpoint). Nothing of your own photos is
used, so one pre-trained file serves every fold, line and team with the same yaml.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import json
import shutil
import sys
from pathlib import Path

from lib.datasets.synthetic import STYLES
from tools import cli

REPO = Path(__file__).resolve().parents[1]
CFG = "experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_real.yaml"
VAL_PHOTOS = 10  # generated photos the training validates on at its end (they are trained on too)
_DONE_STAGES: list[str] = []  # stages finished in this process: a rerun goes on after them


def parse_args(argv=None):
    p = cli.tool_parser(__doc__, cfg=CFG)
    p.add_argument("--out", default=None,
                   help="weights file to write (default: pretrained_models/<cfg name>_generated_"
                        "<style>.pth)")
    p.add_argument("--data", default=None,
                   help="folder for the generated photos and the training (default: "
                        "data/generated_<style>)")
    p.add_argument("--num", type=int, default=2560,
                   help="generated photos (default 2560; 1280 made starts of uneven quality)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated photos (default 0)")
    p.add_argument("--style", choices=list(STYLES), default="canopy", help="generator style")
    p.add_argument("--width", type=int, default=540, help="photo width (default 540)")
    p.add_argument("--height", type=int, default=360, help="photo height (default 360)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    return cli.parse(p, argv)


def stage(title: str, args: list[str]) -> float:
    """One stage (cli.run_stage), remembered as done for the exit status of a later failure."""
    seconds = cli.run_stage(title, args, REPO)
    _DONE_STAGES.append(title)
    return seconds


def generated(raw: Path, settings: dict) -> bool:
    """Whether `raw` holds a finished generation with `settings`; ValueError when it holds one
    with other settings (it is not overwritten)."""
    stamp = raw / "settings.json"
    if not (raw / "annotations.json").is_file() or not stamp.is_file():
        return False
    earlier = json.loads(stamp.read_text())
    if earlier != settings:
        raise ValueError(f"{raw}: holds photos generated with {earlier}, not {settings}; give "
                         "another --data or delete that folder")
    return True


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.num < VAL_PHOTOS or args.epochs < 1:
        raise ValueError(f"--num must be >= {VAL_PHOTOS} and --epochs >= 1 "
                         f"(got {args.num}, {args.epochs})")
    name = Path(args.cfg).stem
    out = Path(args.out or f"pretrained_models/{name}_generated_{args.style}.pth").resolve()
    if out.is_file():
        print(f"{out} is already there (delete it to pre-train again)")
        return cli.DONE
    data = Path(args.data or f"data/generated_{args.style}").resolve()
    raw, lists = data / "raw", data / "list" / "daodixian_seg"
    settings = {k: getattr(args, k) for k in ("num", "seed", "style", "width", "height")}
    times = {}
    if generated(raw, settings):
        print(f"{raw}: {args.num} photos already generated with these settings")
    else:
        if raw.exists():  # an interrupted generation: start it again
            shutil.rmtree(raw)
        times["generate"] = stage(f"1/3 generate {args.num} {args.style} photos", [
            "tools_jss/make_synthetic_daodixian.py", "--out", str(raw), "--num", str(args.num),
            "--seed", str(args.seed), "--width", str(args.width), "--height", str(args.height),
            "--style", args.style])
        (raw / "settings.json").write_text(json.dumps(settings) + "\n")
        shutil.rmtree(lists, ignore_errors=True)  # labels of an earlier generation
    if not (lists / "val.lst").is_file():
        times["convert"] = stage("2/3 convert their polygons to label PNGs and lists", [
            "tools_jss/json2lableImg_jss.py", "--input", str(raw / "annotations.json"),
            "--images", str(raw / "images"), "--out", str(data / "daodixian_seg"),
            "--list-dir", str(lists), "--val-every", "0"])
        train_lines = (lists / "train.lst").read_text().splitlines()
        (lists / "val.lst").write_text("\n".join(train_lines[:VAL_PHOTOS]) + "\n")
    output = data / "output"
    final = output / "daodixian_seg" / name / "final_state.pth"
    resume = (final.parent / "checkpoint.pth.tar").is_file()  # an earlier, interrupted training
    times["train"] = stage(f"3/3 train {name} on them for {args.epochs} epochs", [
        "tools/train.py", "--cfg", args.cfg, "DATASET.ROOT", f"{data}/",
        "DATASET.TRAIN_SET", "list/daodixian_seg/train.lst",
        "DATASET.TEST_SET", "list/daodixian_seg/val.lst", "TRAIN.END_EPOCH", str(args.epochs),
        "TRAIN.EVAL_INTERVAL", str(args.epochs), "TRAIN.TIME_BUDGET", "0", "AUTO_RESUME", str(resume),
        "MODEL.PRETRAINED", "", "OUTPUT_DIR", str(output), "LOG_DIR", str(data / "log"),
        *args.opts])
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    shutil.copyfile(final, partial)
    partial.replace(out)
    print(f"\nwrote {out} ({', '.join(f'{k} {v:.0f} s' for k, v in times.items())})")
    print(f"fine-tune from it: MODEL.PRETRAINED {out}")
    return cli.DONE


if __name__ == "__main__":
    sys.exit(cli.run(main, partly_done=lambda: bool(_DONE_STAGES), interrupted=lambda: (
        "interrupted: run the same command again to go on from where it stopped")))

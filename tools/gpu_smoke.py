"""The GPU smoke test: every CUDA path of the project in one command, with a table to paste.

    python tools/gpu_smoke.py [--out gpu_smoke] [--photos 32] [--skip-bench]

On a machine with 1-8 GPUs (all visible GPUs are used) it runs, in about 5 minutes:
  1. generated power-line data (tools_jss/make_synthetic_daodixian.py + json2lableImg_jss.py);
  2. torchrun training, 2 epochs, one process per GPU: NCCL, SyncBatchNorm, DDP, channels_last,
     AMP fp16 with its GradScaler; validation with wire metrics reduced over NCCL;
  3. exact resume: the same training stopped after epoch 1 (TRAIN.STOP_AFTER_EPOCH) and resumed,
     compared tensor for tensor with the uninterrupted one;
  4. the same training with bf16 autocast where the GPU has native bf16 (else: skipped, said so);
  5. tools/test.py under torchrun and in one plain process: the numbers must be equal;
  6. tools/predict.py on a generated 5472x3078 photo, peak GPU memory reported;
  7. tools/predict.py by torchrun with 2 processes against one process (shards, the merge over
     ranks): same masks and summary rows; skipped, and said so, with fewer than 2 GPUs;
  8. tools/benchmark.py --device cuda: W48 + OCR inference at 1x3x512x1024, the W18-Small
     training step, and a whole 5472x3078 photo at 3 scales + flip (W48).
Each step is a real command line of the tools, run as a user would. The result is a Markdown
table (stdout and <out>/gpu_smoke.md) and <out>/gpu_smoke.json; the exit status is 1 when any
step failed. The GPU unit tests are separate: `python -m pytest -m gpu tests/gpu`.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lib.core.benchmark import write_test_photo
from tools import cli

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "daodixian_seg" / "seg_hrnet_ocr_w18_small_v1_demo.yaml"
W48 = REPO / "experiments" / "daodixian_seg" / "seg_hrnet_ocr_w48_epoch48_1209.yaml"


class Smoke:
    """Runs steps, keeps one row per check: (step, result, detail)."""

    def __init__(self, out: Path):
        self.out = out
        self.rows: list[dict] = []
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, cmd: list[str], timeout: int = 240, env: dict | None = None):
        """Run a command; its output goes to logs/<name>.log. Returns (rc, text, seconds)."""
        start = time.perf_counter()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        try:
            proc = subprocess.run(
                cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout
            )
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            rc = 124
            text = f"timed out after {timeout} s\n{err.stdout or ''}{err.stderr or ''}"
        seconds = time.perf_counter() - start
        (self.logs / f"{name}.log").write_text(f"$ {shlex.join(cmd)}\n{text}")
        return rc, text, seconds

    def add(self, step: str, ok: bool | None, detail: str, **data) -> None:
        result = "ok" if ok else ("skipped" if ok is None else "FAIL")
        self.rows.append({"step": step, "result": result, "detail": detail, **data})
        print(f"[{result}] {step}: {detail}", flush=True)

    def failed(self, step: str, rc: int, text: str, seconds: float) -> None:
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-3:]
        self.add(step, False, f"exit {rc} after {seconds:.0f} s: {' | '.join(last)[-400:]}")


def torchrun(nproc: int, script: str, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", str(REPO / script), *args,
    ]


def python(script: str, *args: str) -> list[str]:
    return [sys.executable, str(REPO / script), *args]


def make_data(smoke: Smoke, root: Path, photos: int) -> bool:
    raw = root / "raw"
    rc, text, s = smoke.run("data_generate", python(
        "tools_jss/make_synthetic_daodixian.py", "--out", str(raw), "--num", str(photos),
        "--seed", "0", "--width", "960", "--height", "540"))
    if rc == 0:
        rc, text, s2 = smoke.run("data_convert", python(
            "tools_jss/json2lableImg_jss.py", "--input", str(raw / "annotations.json"),
            "--images", str(raw / "images"), "--out", str(root / "daodixian_seg"),
            "--list-dir", str(root / "list" / "daodixian_seg"), "--val-every", "4"))
        s += s2
    if rc != 0:
        smoke.failed("generated data", rc, text, s)
        return False
    smoke.add("generated data", True, f"{photos} photos of 960x540 (every 4th for validation), {s:.0f} s")
    return True


def state_diff(a: Path, b: Path) -> tuple[bool, float]:
    """(bitwise equal, max abs difference) of two saved state dicts."""
    sa = torch.load(a, map_location="cpu", weights_only=True)
    sb = torch.load(b, map_location="cpu", weights_only=True)
    if sa.keys() != sb.keys():
        return False, float("inf")
    equal = all(torch.equal(v, sb[k]) for k, v in sa.items())
    diff = max(
        ((v.double() - sb[k].double()).abs().max().item() for k, v in sa.items()
         if v.is_floating_point() and v.numel()),
        default=0.0,
    )
    return equal, diff


def last_epoch_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if re.search(r"epoch \d+/\d+: loss", ln)]
    return lines[-1].split("INFO ", 1)[-1] if lines else ""


def train_step(smoke, name, nproc, common, out_root, *extra, label: str = "") -> Path | None:
    label = label or name
    out = out_root / name
    opts = [*common, "OUTPUT_DIR", str(out), "LOG_DIR", str(out_root / "log"), *extra]
    rc, text, s = smoke.run(f"train_{label}", torchrun(
        nproc, "tools/train_daodixian_seg.py", "--cfg", str(DEMO), *opts))
    if rc != 0:
        smoke.failed(f"train {label}", rc, text, s)
        return None
    sync = re.search(r"SyncBatchNorm: (\d+) layers", text)
    group = re.search(r"process group: backend (\w+)", text)
    detail = (f"{nproc} process(es), {group.group(1) if group else 'no process group'}, "
              f"SyncBN {sync.group(1) + ' layers' if sync else 'off'}, {s:.0f} s; "
              f"{last_epoch_line(text)}")
    smoke.add(f"train {label}", True, detail, seconds=s)
    return out / "daodixian_seg" / DEMO.stem


def main(argv=None) -> int:
    p = cli.tool_parser(__doc__, cfg=False, opts=False)
    p.add_argument("--out", default="gpu_smoke", help="folder for data, runs, logs and the table")
    p.add_argument("--photos", type=int, default=32, help="generated photos (every 4th: val)")
    p.add_argument("--nproc", type=int, default=0, help="processes (0: one per visible GPU)")
    p.add_argument("--skip-bench", action="store_true", help="leave out tools/benchmark.py")
    p.add_argument("--cpu", action="store_true",
                   help="check the script's flow on a CPU (gloo, fp32 instead of fp16, no benchmarks)")
    args = cli.parse(p, argv)
    if args.cpu:
        return cpu_flow_check(args)
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA GPU is visible; nothing to do", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    smoke = Smoke(out)
    nproc = args.nproc or min(torch.cuda.device_count(), 8)
    names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    env = (f"{torch.cuda.device_count()} x {', '.join(names)}, torch {torch.__version__}, "
           f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
           f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}, native bf16 {native_bf16}")
    smoke.add("environment", True, env)
    return steps(smoke, args, out, nproc, native_bf16, "fp16")


def cpu_flow_check(args) -> int:
    out = Path(args.out).resolve()
    smoke = Smoke(out)
    smoke.add("environment", True, f"CPU flow check, torch {torch.__version__}")
    args.skip_bench = True
    return steps(smoke, args, out, args.nproc or 1, False, "")


def steps(smoke: Smoke, args, out: Path, nproc: int, native_bf16: bool, amp: str) -> int:
    start = time.perf_counter()

    data = out / "data"
    if not make_data(smoke, data, args.photos):
        return finish(smoke, out, start)
    common = [
        "DATASET.ROOT", f"{data}/", "WORKERS", "4", "PRINT_FREQ", "2",
        "TRAIN.END_EPOCH", "2", "TRAIN.EVAL_INTERVAL", "1", "TRAIN.BATCH_SIZE_PER_GPU", "4",
        "MODEL.CHANNELS_LAST", "True", "DETERMINISTIC", "True", "TRAIN.OVERWRITE", "True",
    ]
    runs = out / "runs"

    # 2. fp16 + GradScaler, SyncBN, DDP, channels_last
    fp16 = train_step(smoke, "fp16", nproc, common, runs, "TRAIN.AMP", amp)
    # 3. exact resume
    if fp16 is not None:
        cut = train_step(smoke, "fp16_stop_after_1", nproc, common, runs, "TRAIN.AMP", amp,
                         "TRAIN.STOP_AFTER_EPOCH", "1")
        if cut is not None:
            ckpt = torch.load(cut / "checkpoint.pth.tar", map_location="cpu", weights_only=True)
            resumed = train_step(smoke, "fp16_stop_after_1", nproc, common, runs,
                                 "TRAIN.AMP", amp, "TRAIN.RESUME", "True",
                                 label="fp16_resumed")
            if resumed is not None:
                log = (smoke.logs / "train_fp16_resumed.log").read_text()
                equal, diff = state_diff(fp16 / "final_state.pth", resumed / "final_state.pth")
                ok = "resumed from" in log and ckpt["epoch"] == 1
                smoke.add("exact resume", ok and diff < 1e-3,
                          f"stopped at epoch {ckpt['epoch']}, resumed to 2: final weights "
                          f"{'bitwise equal' if equal else f'max abs diff {diff:.3g}'} to the "
                          "uninterrupted run (DETERMINISTIC True)", bitwise=equal, max_diff=diff)
    # 4. bf16
    if args.cpu:
        pass
    elif native_bf16:
        train_step(smoke, "bf16", nproc, common, runs, "TRAIN.AMP", "bf16")
    else:
        smoke.add("train bf16", None, "this GPU has no native bf16 (TRAIN.AMP bf16 runs fp32 here)")

    # 5. tools/test.py: torchrun vs one process
    if fp16 is not None:
        test_opts = ["DATASET.ROOT", f"{data}/", "LOG_DIR", str(runs / "log"), "WORKERS", "2",
                     "TEST.MODEL_FILE", str(fp16 / "final_state.pth"), "MODEL.CHANNELS_LAST", "True",
                     "TEST.SCALE_LIST", "0.75,1.0", "TEST.FLIP_TEST", "True"]
        results = {}
        for tag, cmd in (
            ("torchrun", torchrun(nproc, "tools/test.py", "--cfg", str(DEMO), "--no-save",
                                  "OUTPUT_DIR", str(runs / "test_torchrun"), *test_opts)),
            ("one process", python("tools/test.py", "--cfg", str(DEMO), "--no-save",
                                   "OUTPUT_DIR", str(runs / "test_one"), *test_opts)),
        ):
            rc, text, s = smoke.run(f"test_{tag.replace(' ', '_')}", cmd)
            folder = runs / ("test_torchrun" if tag == "torchrun" else "test_one")
            if rc != 0:
                smoke.failed(f"tools/test.py ({tag})", rc, text, s)
                continue
            results[tag] = json.loads(next(folder.rglob("test_metrics.json")).read_text())
            m = results[tag]
            smoke.add(f"tools/test.py ({tag})", True,
                      f"mIoU {m['miou']:.4f}, wire F1 {m.get('wire', {}).get('f1', float('nan')):.4f}, "
                      f"{s:.0f} s (scales 0.75,1.0 + flip)")
        if len(results) == 2:
            a, b = results["torchrun"], results["one process"]
            same = a["confusion_matrix"] == b["confusion_matrix"] and a.get("wire") == b.get("wire")
            smoke.add("test.py torchrun == one process", same,
                      "confusion matrix and wire scores identical" if same else
                      f"differ: {a['miou']:.6f} vs {b['miou']:.6f}")

    # 6. tools/predict.py on a 5472x3078 photo
    if fp16 is not None:
        photos = out / "photos"
        photos.mkdir(parents=True, exist_ok=True)
        photo = write_test_photo(photos / "a_5472x3078.jpg", 3078, 5472)
        (photos / "b_5472x3078.jpg").write_bytes(photo.read_bytes())
        rc, text, s = smoke.run("predict", python(
            "tools/predict.py", "--cfg", str(DEMO), "--input", str(photos), "--output",
            str(runs / "predict"), "--overwrite", "TEST.MODEL_FILE", str(fp16 / "final_state.pth")))
        if rc != 0:
            smoke.failed("tools/predict.py 5472x3078", rc, text, s)
        else:
            peak = re.search(r"peak GPU memory (\d+) MiB", text)
            steady = re.search(r"(\d+) MiB after the first photo", text)
            smoke.add("tools/predict.py 5472x3078", peak is not None or args.cpu,
                      f"W18-Small + OCR (demo config, 1024 px tiles, native resolution): "
                      f"2 photos in {s:.1f} s for the command; peak GPU memory "
                      f"{peak.group(1) if peak else '?'} MiB with cuDNN's algorithm search, "
                      f"{steady.group(1) if steady else '?'} MiB for the second photo",
                      peak_mb=int(peak.group(1)) if peak else None)

    # 7. two processes: predict's shards and merge across ranks (NCCL on two GPUs; gloo on
    # the CPU flow); a one-GPU machine says it was skipped
    if fp16 is not None:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if args.cpu or gpus >= 2:
            two_process_predict(smoke, out, runs, fp16 / "final_state.pth", args.cpu)
        else:
            smoke.add("predict: 2 processes == 1", None,
                      f"skipped: {gpus} GPU visible; this step needs 2 (NCCL between ranks)")

    # 8. benchmarks
    if not args.skip_bench:
        bench(smoke, out)
    return finish(smoke, out, start)


def two_process_predict(smoke: Smoke, out: Path, runs: Path, weights: Path, cpu: bool) -> None:
    """Three photos (an odd count: shards of 2 and 1) predicted by torchrun with 2 processes
    and by one process: the same masks and the same summary rows."""
    photos = out / "photos_3"
    photos.mkdir(parents=True, exist_ok=True)
    for k in range(3):
        write_test_photo(photos / f"p{k}.jpg", 540, 960, seed=k)
    args = ["--cfg", str(DEMO), "--input", str(photos), "--overwrite",
            *(["--device", "cpu"] if cpu else []), "TEST.MODEL_FILE", str(weights)]
    results = {}
    for tag, cmd in (("two", torchrun(2, "tools/predict.py", *args, "--output",
                                      str(runs / "predict_two"))),
                     ("one", python("tools/predict.py", *args, "--output",
                                    str(runs / "predict_one")))):
        rc, text, s = smoke.run(f"predict_{tag}_processes", cmd)
        if rc != 0:
            smoke.failed(f"predict: {tag} process(es)", rc, text, s)
            return
        results[tag] = s
    equal = total = 0
    for k in range(3):
        a = np.asarray(Image.open(runs / "predict_one" / "masks" / f"p{k}.png"))
        b = np.asarray(Image.open(runs / "predict_two" / "masks" / f"p{k}.png"))
        equal, total = equal + int((a == b).sum()), total + a.size

    def rows(folder: Path) -> list[dict]:
        with open(folder / "summary.csv", newline="") as f:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]

    same_rows = rows(runs / "predict_one") == rows(runs / "predict_two")
    share = equal / max(total, 1)
    smoke.add("predict: 2 processes == 1", share >= 0.999 and same_rows,
              f"3 photos: {100 * share:.3f}% of mask pixels equal, summary rows "
              f"{'identical' if same_rows else 'differ'}; {results['two']:.0f} s with 2 "
              f"processes, {results['one']:.0f} s with 1", mask_equal=share)


def bench(smoke: Smoke, out: Path) -> None:
    cases = [
        ("infer W48+OCR 1x3x512x1024", W48, ["--what", "infer", "--input-size", "512x1024",
         "--runs", "10", "--warmup", "3", "--variants",
         "fp32 eager,channels_last,bf16+channels_last,fp16+channels_last,"
         "bn folded+bf16+channels_last,bn folded+fp16+channels_last"]),
        ("train step W18-Small+OCR 8x3x512x1024", DEMO, ["--what", "train", "--input-size",
         "512x1024", "--batch", "8", "--runs", "5", "--warmup", "2", "--variants",
         "fp32 eager,channels_last,bf16+channels_last,fp16+channels_last"]),
        ("photo W48+OCR 5472x3078, 3 scales + flip", W48, ["--what", "photo", "--runs", "1",
         "--warmup", "1", "--window-batch", "8", "--variants",
         "fp32 eager,bn folded+bf16+channels_last"]),
    ]
    for title, cfg, extra in cases:
        tag = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
        js = out / f"bench_{tag}.json"
        rc, text, s = smoke.run(f"bench_{tag}", python(
            "tools/benchmark.py", "--cfg", str(cfg), "--device", "cuda", "--json", str(js), *extra,
            "MODEL.PRETRAINED", ""))  # calibrated random weights: no ImageNet file needed
        if rc != 0:
            smoke.failed(f"benchmark {title}", rc, text, s)
            continue
        result = json.loads(js.read_text())
        parts = []
        for r in result["rows"]:
            if r.get("skipped"):
                parts.append(f"{r['variant']}: skipped")
                continue
            agree = f", argmax {100 * r['argmax_agree']:.2f}%" if "argmax_agree" in r else ""
            peak = f", {r['peak_mem_mb']:.0f} MiB" if r.get("peak_mem_mb") is not None else ""
            parts.append(f"{r['variant']}: {r['images_per_s']:.2f}/s "
                         f"({r['latency_ms']:.1f} ms{peak}{agree})")
        smoke.add(f"benchmark {title}", True, "; ".join(parts), rows=result["rows"])


def finish(smoke: Smoke, out: Path, start: float) -> int:
    total = time.perf_counter() - start
    lines = [f"GPU smoke test ({total / 60:.1f} min)", "", "| step | result | detail |",
             "| --- | --- | --- |"]
    lines += [f"| {r['step']} | {r['result']} | {r['detail'].replace('|', '/')} |"
              for r in smoke.rows]
    table = "\n".join(lines)
    print("\n" + table)
    (out / "gpu_smoke.md").write_text(table + "\n")
    (out / "gpu_smoke.json").write_text(json.dumps({"seconds": total, "rows": smoke.rows},
                                                   indent=2))
    return 1 if any(r["result"] == "FAIL" for r in smoke.rows) else 0


if __name__ == "__main__":
    sys.exit(cli.run(main))  # Ctrl-C: one line, exit 130

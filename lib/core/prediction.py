"""Predicting photo folders for inspection teams: masks, overlays, summaries, pre-annotations.

`predict_photos` runs a model over photos with native-resolution tiling (`lib.core.tiling`) and
writes, for a photo `<rel>.jpg` (its path relative to the input folder):

    <out>/masks/<rel>.png       class ids (0 background, 1 wire, ...), 8-bit
    <out>/overlays/<rel>.jpg    the photo with the classes blended in and wire regions boxed
    <out>/summaries/<rel>.json  size, wire pixel fraction, wire segments, polygons, timing
                                (and wire metric counts when a label was given)

then, over every photo done so far, `<out>/summary.csv` and `<out>/preannotations.json` (the
annotation platform's format). Each output is written to a temporary name and renamed, the
summary last, so a photo with a summary is complete: a rerun skips it (resume) unless
`overwrite`. Unreadable photos are skipped with a one-line reason.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from lib.config import wire_classes, wire_tolerance
from lib.core.thresholds import resolve_threshold
from lib.core.tiling import TiledSettings
from lib.core.vectorize import count_segments, platform_entry, write_preannotations
from lib.core.wire_metrics import COUNT_NAMES, WireMetrics, scores_from_counts
from lib.datasets import DATASETS
from lib.datasets.base import label_tables
from lib.datasets.decode import DecodeError, decode_image, decode_label
from lib.datasets.lists import IMAGE_SUFFIXES, parse_line
from lib.datasets.overlay import overlay, region_boxes
from lib.datasets.palette import palette_for, save_id_png
from lib.utils.atomic import write_atomic
from lib.utils.distributed import broadcast_from_main, gather_to_main, get_rank, get_world_size
from lib.utils.runtime import device_of

__all__ = [
    "IMAGE_SUFFIXES",
    "list_photos",
    "read_label",
    "predict_photos",
    "PredictReport",
]

logger = logging.getLogger(__name__)

LIST_SUFFIXES = (".txt", ".lst")


def _list_entry(line: str, list_file: Path) -> Path:
    """The photo of one list line: the first tab field, the whole line when that names a file
    (a one-column list whose names hold spaces), else the first whitespace field."""
    fields = parse_line(line)
    if len(fields) > 1 and "\t" not in line:  # "a b": two paths, or one name with a space?
        whole = list_file.parent / line.strip()  # (an absolute line stays absolute)
        fields = [line.strip()] if whole.is_file() else fields
    item = Path(fields[0])
    return item if item.is_absolute() else list_file.parent / item


def list_photos(
    inputs: Sequence[str | Path], exclude: str | Path | None = None
) -> list[tuple[Path, str]]:
    """(photo path, relative name) for photos, folders (searched recursively, names relative
    to the folder) and list files (one photo per line, first column, relative to the list
    file's folder unless absolute). Photos under `exclude` (the output folder, when it lies
    inside an input folder) are left out. Missing inputs raise FileNotFoundError."""
    skip = Path(exclude).resolve() if exclude is not None else None
    photos: list[tuple[Path, str]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            root = path.resolve()  # once per folder, not per photo
            found = sorted(
                p
                for p in root.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES
                and not (skip is not None and p.is_relative_to(skip))
            )
            photos += [(path / p.relative_to(root), p.relative_to(root).as_posix()) for p in found]
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            for line in path.read_text(encoding="utf-8-sig").split("\n"):
                if line.strip() and not line.lstrip().startswith("#"):
                    item = _list_entry(line, path)
                    photos.append((item, item.name))
        elif path.is_file():
            photos.append((path, path.name))
        else:
            raise FileNotFoundError(f"{path}: {_why_missing(path)}")
    return photos


def _why_missing(path: Path) -> str:
    """Why `path` is neither a photo, a folder nor a list file, in words."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:  # Python < 3.13: "Symlink loop from ..."
            return "a symbolic link that loops (it points back to itself)"
        except OSError as err:
            if err.errno == errno.ELOOP:
                return "a symbolic link that loops (it points back to itself)"
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
    if path.exists():
        return "not a photo, folder or list file"
    return "no such photo, folder or list file"


def output_stems(rels: Sequence[str]) -> dict[str, str]:
    """Output name (without extension) per photo: its name without the suffix, or with it
    (`a.jpg` -> `a.jpg`) when two photos would share one (`a.jpg` and `a.png`)."""
    stems = [str(Path(rel).with_suffix("")) for rel in rels]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    return {rel: (rel if counts[stem] > 1 else stem) for rel, stem in zip(rels, stems)}


def read_label(path: Path, cfg, dilate: int = 0) -> np.ndarray:
    """A label PNG as class ids (the dataset's value mapping; unknown values -> ignore label),
    wire classes dilated by `dilate` pixels (for one-pixel-wide labels)."""
    raw = decode_label(path)
    ignore = cfg.TRAIN.IGNORE_LABEL
    mapping = getattr(DATASETS.get(cfg.DATASET.DATASET), "label_map", None)
    allowed, lut = label_tables(mapping, cfg.DATASET.NUM_CLASSES, ignore)
    bad = [int(v) for v in np.unique(raw) if v < 0 or v >= len(allowed) or not allowed[v]]
    if bad:  # as training refuses them: a value that is no class would be scored as nothing
        raise DecodeError(
            f"label {path} has values {bad[:8]} that are no class of {cfg.DATASET.DATASET} "
            f"({cfg.DATASET.NUM_CLASSES} classes) and not the ignore label {ignore}"
        )
    ids = lut[raw]
    if dilate > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        for cls in wire_classes(cfg):
            grown = cv2.dilate((ids == cls).astype(np.uint8), kernel) > 0
            ids[grown & (ids != ignore)] = cls
    return ids


def _atomic(path: Path, write) -> None:
    """lib.utils.atomic.write_atomic for a predicted file (cv2 picks the format by suffix)."""
    write_atomic(path, write, keep_suffix=True)


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> None:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed")
    data.tofile(str(path))


@dataclass
class PredictReport:
    """What a run did: photos predicted, skipped (with reasons), resumed; metrics if labelled."""

    predicted: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one-line reasons
    metrics: dict | None = None  # wire scores over every labelled photo done so far
    seconds: float = 0.0  # wall time of the run
    peak_gpu_mb: float | None = None  # torch.cuda.max_memory_allocated over the run (CUDA only)
    # the same after the first photo predicted: without cuDNN's algorithm search (CUDNN.BENCHMARK)
    steady_gpu_mb: float | None = None
    device: str = "cpu"
    processes: int = 1  # processes that shared the photos (torchrun)

    def lines(self) -> list[str]:
        out = [
            f"predicted {len(self.predicted)}, already done {len(self.resumed)}, "
            f"skipped {len(self.skipped)} in {self.seconds:.1f} s on {self.device}"
            + (f" ({self.processes} processes)" if self.processes > 1 else "")
        ]
        if self.peak_gpu_mb is not None:
            steady = (
                f", {self.steady_gpu_mb:.0f} MiB after the first photo"
                if self.steady_gpu_mb is not None
                else ""
            )
            out.append(
                f"peak GPU memory {self.peak_gpu_mb:.0f} MiB (torch.cuda.max_memory_allocated; "
                f"the first photo includes cuDNN's algorithm search{steady})"
            )
        if self.metrics:
            m = self.metrics
            out.append(
                f"wire precision {m['precision']:.4f} recall {m['recall']:.4f} "
                f"F1 {m['f1']:.4f} clDice {m['cldice']:.4f} ({m['photos']} labelled photos)"
            )
        return out


def _summary_path(out: Path, stem: str) -> Path:
    return out / "summaries" / (stem + ".json")


def _predict_one(
    model,
    cfg,
    photo: Path,
    rel: str,
    out: Path,
    label_path: Path | None,
    label_dilate: int,
    tiles: TiledSettings,
    threshold: float,
    stem: str,
) -> dict:
    start = time.perf_counter()
    rgb = decode_image(photo)
    wire = wire_classes(cfg)
    result = tiles.predict(model, rgb, wire_threshold=threshold, return_prob=cfg.TEST.SAVE_PROB)
    ids, prob = result if cfg.TEST.SAVE_PROB else (result, None)
    _atomic(out / "masks" / f"{stem}.png", lambda p: save_id_png(ids, p))
    if cfg.TEST.SAVE_PROB:
        _atomic(out / "probs" / f"{stem}.png", lambda p: save_id_png(prob, p))
    palette = palette_for(cfg.DATASET.DATASET, cfg.DATASET.NUM_CLASSES)
    picture = overlay(rgb, ids, palette, boxes=region_boxes(ids, wire, min_area=200))
    _atomic(out / "overlays" / f"{stem}.jpg", lambda p: _write_jpeg(p, picture))
    entry = platform_entry(rel, ids, wire)
    summary = {
        "photo": rel,
        "width": int(ids.shape[1]),
        "height": int(ids.shape[0]),
        "wire_fraction": float(np.isin(ids, wire).mean()),
        "segments": count_segments(ids, wire),
        "seconds": round(time.perf_counter() - start, 3),
        "polygons": [np.round(p, 2).tolist() for p in entry["polygons"]],
    }
    if label_path is not None:
        metrics = WireMetrics(wire, wire_tolerance(cfg), cfg.TRAIN.IGNORE_LABEL)
        label = read_label(label_path, cfg, label_dilate)
        if label.shape != ids.shape:
            raise DecodeError(
                f"{label_path}: label is {label.shape[1]}x{label.shape[0]} "
                f"but the photo is {ids.shape[1]}x{ids.shape[0]}"
            )
        summary.update(metrics.update(ids, label))
        summary["wire_counts"] = metrics.counts.tolist()
    _atomic(_summary_path(out, stem), lambda p: p.write_text(json.dumps(summary), encoding="utf-8"))
    return summary


def _write_totals(out: Path, summaries: list[dict]) -> None:
    """summary.csv and preannotations.json over `summaries`."""
    columns = [
        "photo",
        "width",
        "height",
        "wire_fraction",
        "segments",
        "seconds",
        "precision",
        "recall",
        "f1",
        "cldice",
    ]

    def write_csv(p: Path) -> None:
        with open(p, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(summaries)

    _atomic(out / "summary.csv", write_csv)
    entries = [
        {"uri": s["photo"], "width": s["width"], "height": s["height"], "polygons": s["polygons"]}
        for s in summaries
    ]
    _atomic(out / "preannotations.json", lambda p: write_preannotations(p, entries))


def _read_summary(out: Path, stems: dict[str, str], rel: str) -> dict:
    """The summary another process wrote for photo `rel` (rank 0's merge)."""
    path = _summary_path(out, stems[rel])
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: written by another process of this run but not visible here; give every "
            "machine one --output folder on a shared disk"
        ) from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a summary file ({err})") from None


def _totals(summaries: Iterable[dict]) -> dict | None:
    """Pooled wire scores over the labelled photos among `summaries` (None without any)."""
    counted = [s["wire_counts"] for s in summaries if "wire_counts" in s]
    if not counted:
        return None
    scores = scores_from_counts(np.sum(counted, axis=0))
    scores["photos"] = len(counted)
    return dict(zip(COUNT_NAMES, np.sum(counted, axis=0).tolist())) | scores


@torch.no_grad()
def predict_photos(
    model: nn.Module,
    cfg,
    photos: Sequence[tuple[Path, str]],
    out: str | Path,
    *,
    overwrite: bool = False,
    labels: str | Path | None = None,
    label_dilate: int = 0,
) -> PredictReport:
    """Predict `photos` ((path, relative name) from `list_photos`) into `out`; see the module doc.

    labels: folder of label PNGs named like the photos (`<rel>.png`); photos without one are
    predicted but not scored. The model must be in eval mode on its device.

    Under torchrun (a process group of N processes) process r predicts photos r, r+N, ...;
    every process writes only its own photos' files, and rank 0 writes summary.csv and
    preannotations.json over all photos in their one-process order (reading the other ranks'
    summaries from the shared --output folder after waiting for the slowest rank, up to
    HOST_TIMEOUT), so the outputs are those of a one-process run. Every rank returns the whole
    run's report.
    """
    out = Path(out)
    rank, world = get_rank(), get_world_size()
    device = device_of(model)
    report = PredictReport(device=str(device), processes=world)
    threshold, source = resolve_threshold(cfg)
    if threshold > 0:
        logger.info("wire where P(wire) >= %.4g (%s)", threshold, source)
    tiles = TiledSettings.from_cfg(cfg)
    first_peak = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    stems = output_stems([rel for _, rel in photos])
    mine = list(range(rank, len(photos), world))
    summaries: dict[int, dict] = {}
    # one bar for the campaign on rank 0: its own photos times the number of processes (the
    # ranks take turns, so they progress alike), with photos per minute and the time left
    bar = tqdm(total=len(photos), desc="predict", unit="photo", disable=None if rank == 0 else True)
    for index in mine:
        photo, rel = photos[index]
        summary_file = _summary_path(out, stems[rel])
        if summary_file.is_file() and not overwrite:
            try:
                summaries[index] = json.loads(summary_file.read_text(encoding="utf-8"))
                report.resumed.append(rel)
                bar.update(min(world, len(photos) - bar.n))
                continue
            except (OSError, json.JSONDecodeError):
                pass  # a damaged summary: predict the photo again
        label_path = None
        if labels is not None:
            candidate = Path(labels) / (str(Path(rel).with_suffix("")) + ".png")
            label_path = candidate if candidate.is_file() else None
        try:
            summaries[index] = _predict_one(
                model, cfg, photo, rel, out, label_path, label_dilate, tiles, threshold,
                stems[rel],
            )  # fmt: skip
            report.predicted.append(rel)
            if device.type == "cuda":
                if len(report.predicted) == 1:
                    first_peak = torch.cuda.max_memory_allocated(device)
                    torch.cuda.reset_peak_memory_stats(device)
                else:
                    report.steady_gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20
        except DecodeError as err:
            logger.warning("skipped: %s", err)
            report.skipped.append(str(err))
        bar.update(min(world, len(photos) - bar.n))
        done = world * (len(report.predicted) + len(report.skipped))  # this run's, all ranks
        bar.set_postfix_str(f"{60 * done / max(time.perf_counter() - start, 1e-9):.1f} photos/min")
    bar.close()
    if device.type == "cuda" and report.predicted:
        report.peak_gpu_mb = max(first_peak, torch.cuda.max_memory_allocated(device)) / 2**20
    if world > 1:
        # rank 0 waits for the slowest rank on the host group (hours if need be, not the
        # default group's timeout), takes every rank's photo names and reads the other ranks'
        # summaries back from disk; the merged lists go back to every rank (one exit status)
        gathered = gather_to_main((sorted(summaries), report.predicted, report.resumed,
                                   report.skipped))
        merged = None
        if rank == 0:
            summaries = {
                i: summaries[i] if i in summaries else _read_summary(out, stems, photos[i][1])
                for i in sorted({i for part in gathered for i in part[0]})
            }
            order = {rel: i for i, (_, rel) in enumerate(photos)}
            merged = [[x for part in gathered for x in part[k]] for k in (1, 2, 3)]
            merged[0].sort(key=order.__getitem__)
            merged[1].sort(key=order.__getitem__)
            ordered = [summaries[i] for i in sorted(summaries)]
            merged.append(_totals(ordered))
            _write_totals(out, ordered)
        report.predicted, report.resumed, report.skipped, report.metrics = broadcast_from_main(merged)
    else:
        ordered = [summaries[i] for i in sorted(summaries)]
        report.metrics = _totals(ordered)
        _write_totals(out, ordered)
    report.seconds = time.perf_counter() - start
    return report

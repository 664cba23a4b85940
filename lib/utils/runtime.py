"""Run-time set-up every tool shares: seeds, cudnn flags, the device, sample limits.

One definition each: `seed_everything` (python, numpy, torch), `configure_backends`
(CUDNN.* and DETERMINISTIC), `resolve_device` (a `--device` value checked against this
machine), `device_of` (where a model's weights live), `limit` (TRAIN/TEST.NUM_SAMPLES).
"""

from __future__ import annotations

import os
import random

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

__all__ = ["seed_everything", "configure_backends", "resolve_device", "device_of", "limit",
           "limit_worker_threads",
           "cpu_threads_per_process"]


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's generators (numpy takes the seed modulo 2**32)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_backends(cfg) -> None:
    """CUDNN.* as officially; DETERMINISTIC (ours) adds deterministic algorithms everywhere.

    Every tool that runs the network calls this once (train, test, predict, benchmark), so
    `CUDNN.BENCHMARK` of the experiment file takes effect wherever the model runs on a GPU.
    """
    torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED
    torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK and not cfg.DETERMINISTIC
    torch.backends.cudnn.deterministic = cfg.CUDNN.DETERMINISTIC or cfg.DETERMINISTIC
    if cfg.DETERMINISTIC:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(text: str = "") -> torch.device:
    """A `--device` value checked against this machine: "" (cuda if present, else cpu), "cpu",
    "cuda" or "cuda:N". Raises ValueError in one line for a bad name, no GPU, or no GPU N."""
    text = (text or "").strip().lower()
    if not text:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"--device {text!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"--device {text!r}: expected cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(f"--device {text}: no CUDA GPU is visible on this machine; use --device cpu")
    if device.index is not None and device.index >= count:
        raise ValueError(f"--device {text}: only {count} CUDA GPU(s) visible (cuda:0..cuda:{count - 1})")
    return device


def device_of(model: nn.Module, fallback: torch.device | str = "cpu") -> torch.device:
    """The device of the model's first parameter (`fallback` for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device(fallback)


def limit(dataset, num_samples: int):
    """TRAIN/TEST.NUM_SAMPLES: the first N samples (0: all), keeping the dataset attributes."""
    if num_samples and num_samples < len(dataset):
        subset = Subset(dataset, range(num_samples))
        for attr in ("has_labels", "class_weights", "num_classes", "ignore_label"):
            if hasattr(dataset, attr):
                setattr(subset, attr, getattr(dataset, attr))
        return subset
    return dataset


def cpu_threads_per_process() -> int:
    """This machine's usable cores divided between the processes torchrun started on it
    (LOCAL_WORLD_SIZE), at least 1: processes x threads never exceed the cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def limit_worker_threads(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: one OpenCV thread per worker. A forked worker keeps
    OpenCV's pool of one thread per core (torch already limits its own to one), so 8 ranks
    with 4 workers each would run 32 x cores decode and resize threads on one node.
    0 (run sequentially), not 1: in a worker forked while the parent's pool was running,
    OpenCV 5 waits forever in setNumThreads(1) for the pool threads the fork did not copy."""
    cv2.setNumThreads(0)

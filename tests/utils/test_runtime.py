"""lib/utils/runtime.py: device lookup, seeds, sample limits."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from lib.utils import runtime


def test_resolve_device_names_what_is_wrong(monkeypatch):
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="expected cpu, cuda or cuda:N"):
        runtime.resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.resolve_device("") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        runtime.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="only 2 CUDA GPU"):
        runtime.resolve_device("cuda:2")


def test_device_of_a_model_and_of_one_without_parameters():
    assert runtime.device_of(nn.Linear(2, 2)) == torch.device("cpu")
    assert runtime.device_of(nn.ReLU(), "meta") == torch.device("meta")


def test_seed_everything_repeats_all_three_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    runtime.seed_everything(2**32 + 5)  # numpy takes it modulo 2**32
    first = draw()
    runtime.seed_everything(2**32 + 5)
    assert draw() == first


def test_limit_keeps_the_dataset_attributes():
    class Data(torch.utils.data.Dataset):
        has_labels, num_classes = True, 2

        def __len__(self):
            return 5

        def __getitem__(self, i):
            return i

    part = runtime.limit(Data(), 2)
    assert len(part) == 2 and part.has_labels and part.num_classes == 2
    whole = Data()
    assert runtime.limit(whole, 0) is whole and runtime.limit(whole, 9) is whole


def test_cpu_threads_are_divided_between_the_processes_of_a_machine(monkeypatch):
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert runtime.cpu_threads_per_process() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert runtime.cpu_threads_per_process() == 1
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert runtime.cpu_threads_per_process() == 16


class _CvThreads(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        return cv2.getNumThreads()


def test_dataloader_workers_of_a_run_use_one_opencv_thread():
    from lib.config import get_config
    from lib.core.training import _loader_options
    from lib.utils.distributed import DistInfo

    cfg = get_config(str(Path(__file__).resolve().parents[2] / "experiments" / "daodixian_seg"
                         / "seg_hrnet_ocr_w18_small_v1_demo.yaml"), ["WORKERS", "1"])
    info = DistInfo(0, 1, 0, torch.device("cpu"), False, "")
    before = cv2.getNumThreads()
    cv2.setNumThreads(4)  # what a forked worker would inherit on a 4-core node
    try:
        # the pool running when the worker is forked (as after a validation in the main
        # process): a worker that then asked OpenCV for one thread hung; the timeout makes a
        # hang a failure
        photo = np.zeros((2000, 3000, 3), np.uint8)
        for _ in range(3):
            cv2.GaussianBlur(cv2.resize(photo, (1500, 1000)), (9, 9), 2)
        options = {**_loader_options(cfg, info), "timeout": 60}
        loader = torch.utils.data.DataLoader(_CvThreads(), **options)
        assert [int(n) for n in loader] == [1, 1]
    finally:
        cv2.setNumThreads(before)

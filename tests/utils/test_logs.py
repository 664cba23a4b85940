"""One error line for every CLI, also for errors raised inside DataLoader workers."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from lib.datasets.base import DatasetError
from lib.utils.logs import error_line


class Bad(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise DatasetError("list/train.lst:3: label a.png is 10x10 but image a.jpg is 20x20")


def test_a_worker_error_is_reported_with_its_own_message():
    torch.set_num_threads(1)
    try:
        next(iter(DataLoader(Bad(), num_workers=1)))
    except Exception as err:  # torch re-raises the worker's DatasetError with a traceback
        caught = err
    assert "Original Traceback" in str(caught)
    assert error_line(caught) == "list/train.lst:3: label a.png is 10x10 but image a.jpg is 20x20"


def test_a_plain_error_keeps_its_first_line():
    assert error_line(ValueError("first line\nsecond")) == "first line"
    assert error_line(KeyError()) == "KeyError"

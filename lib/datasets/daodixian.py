"""Power-line photos ("daodixian_seg"): background 0 and wire 1."""

from __future__ import annotations

from lib.datasets.base import ListDataset
from lib.datasets.palette import POWERLINE_ID_VALUES

__all__ = ["PowerLineDataset", "SEED_CLASS_WEIGHTS"]

# The seed's hard-coded weights (background, wire); tools_jss/class_weights.py computes
# weights for a given label set, to be put in DATASET.CLASS_WEIGHTS.
SEED_CLASS_WEIGHTS = (0.4373, 1.507)


class PowerLineDataset(ListDataset):
    """Labels 0/1 (our converter) or 0/255 (masks as the seed saved them, 255 = wire)."""

    expected_num_classes = 2
    default_class_weights = SEED_CLASS_WEIGHTS
    label_map = {0: 0, 1: 1, 255: 1}
    id_values = POWERLINE_ID_VALUES  # id PNGs as the seed saved its masks: wire = 255

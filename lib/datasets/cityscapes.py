"""Cityscapes: the 34 label ids of gtFine_labelIds.png mapped to the 19 train ids."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lib.datasets.base import ListDataset

__all__ = [
    "CityscapesLabel",
    "LABELS",
    "NAME_TO_LABEL",
    "CityscapesDataset",
    "train_ids_to_label_ids",
]


class CityscapesLabel(NamedTuple):
    name: str
    id: int  # label id in gtFine_labelIds.png
    train_id: int  # 255: not trained on
    color: tuple[int, int, int]


# The table of cityscapesscripts/helpers/labels.py (name, id, trainId, color).
LABELS = [
    CityscapesLabel("unlabeled", 0, 255, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, (0, 0, 0)),
    CityscapesLabel("static", 4, 255, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, (119, 11, 32)),
    CityscapesLabel("license plate", -1, -1, (0, 0, 142)),
]
NAME_TO_LABEL = {label.name: label for label in LABELS}

# Published with the official code (lib/datasets/cityscapes.py), in train-id order.
CLASS_WEIGHTS = (
    0.8373,
    0.918,
    0.866,
    1.0345,
    1.0166,
    0.9969,
    0.9754,
    1.0489,
    0.8786,
    1.0023,
    0.9539,
    0.9843,
    1.1116,
    0.9037,
    1.0865,
    1.0955,
    1.0865,
    1.1529,
    1.0507,
)


class CityscapesDataset(ListDataset):
    """Cityscapes lists (leftImg8bit image, gtFine_labelIds label); 19 classes."""

    expected_num_classes = 19
    default_class_weights = CLASS_WEIGHTS

    def label_mapping(self) -> dict[int, int]:
        """The official label_mapping: ids 0..33 -> train ids, unused ids -> the ignore label."""
        return {
            lab.id: (self.ignore_label if lab.train_id == 255 else lab.train_id)
            for lab in LABELS
            if lab.id >= 0
        }


def train_ids_to_label_ids(pred: np.ndarray) -> np.ndarray:
    """Train ids (0..18) -> Cityscapes label ids, for benchmark submission (others -> 0)."""
    lut = np.zeros(256, dtype=np.uint8)
    for lab in LABELS:
        if 0 <= lab.train_id < 255:
            lut[lab.train_id] = lab.id
    return lut[np.asarray(pred).astype(np.uint8)]

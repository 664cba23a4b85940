"""Cityscapes: the 34 label ids of gtFine_labelIds.png mapped to the 19 train ids."""

from __future__ import annotations

from lib.datasets.base import ListDataset
from lib.datasets.labels import LABELS, NAME_TO_LABEL, CityscapesLabel

__all__ = [
    "CityscapesLabel",
    "LABELS",
    "NAME_TO_LABEL",
    "CityscapesDataset",
]



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

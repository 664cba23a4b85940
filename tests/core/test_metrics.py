"""ConfusionMatrix against confusion matrices and IoUs computed by hand."""

import pytest
import torch

from lib.core.metrics import ConfusionMatrix


def test_confusion_matrix_counts_by_hand_and_skips_ignore():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    cm = ConfusionMatrix(3, ignore_label=255)
    cm.update(target, pred)
    # rows = label, cols = prediction; the 255 pixel is not counted
    expected = torch.tensor([[1, 1, 0], [0, 2, 1], [1, 0, 1]])
    assert torch.equal(cm.mat, expected)
    m = cm.compute()
    # IoU_c = tp / (row + col - tp): c0 1/(2+2-1), c1 2/(3+3-2), c2 1/(2+2-1)
    assert m["iou"] == pytest.approx([1 / 3, 2 / 4, 1 / 3])
    assert m["miou"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert m["pixel_acc"] == pytest.approx(4 / 7)
    assert m["mean_acc"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)


def test_absent_class_counts_zero_in_miou_as_officially():
    cm = ConfusionMatrix(3, ignore_label=-1)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    m = cm.compute()
    assert m["iou"] == [1.0, 1.0, 0.0]
    assert m["miou"] == pytest.approx(2 / 3)


def test_update_from_logits_and_accumulation():
    logits = torch.zeros(2, 2, 1, 3)
    logits[:, 1, 0, 0] = 1.0  # first pixel -> class 1, others -> class 0
    target = torch.tensor([[[1, 0, 1]], [[1, 1, 0]]])
    cm = ConfusionMatrix(2, ignore_label=255)
    cm.update_from_logits(target, logits)
    cm.update_from_logits(target, logits)
    assert torch.equal(cm.mat, 2 * torch.tensor([[2, 0], [2, 2]]))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(2).update(torch.zeros(2, 3), torch.zeros(3, 2))

"""Losses beyond the fixture: OHEM aux-term choices, edge cases, configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lib.config import get_config
from lib.core.criterion import (
    CrossEntropy,
    OhemCrossEntropy,
    SkeletonRecall,
    SoftDice,
    build_criterion,
    soft_skeleton,
)

REPO = Path(__file__).resolve().parents[2]


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = [torch.randn(2, 3, 4, 5, generator=g) for _ in range(2)]
    target = torch.randint(0, 3, (2, 8, 10), generator=g)
    target[0, :2] = 255
    return scores, target


def test_single_output_tensor_and_upsampling():
    scores, target = _data()
    loss = CrossEntropy(255, [1.0])(scores[1], target)
    up = F.interpolate(scores[1], size=(8, 10), mode="bilinear", align_corners=True)
    torch.testing.assert_close(loss, F.cross_entropy(up, target, ignore_index=255))


def test_ohem_aux_term_official_vs_weighted_mean():
    scores, target = _data()
    w = torch.tensor([0.5, 1.0, 2.0])
    up = F.interpolate(scores[0], size=(8, 10), mode="bilinear", align_corners=True)
    per_pixel = F.cross_entropy(up, target, weight=w, ignore_index=255, reduction="none")
    official = OhemCrossEntropy(255, [0.4, 1], w, thresh=0.9, min_kept=10, aux_mean="official")
    weighted = OhemCrossEntropy(255, [0.4, 1], w, thresh=0.9, min_kept=10, aux_mean="weighted")
    torch.testing.assert_close(official.term(up, target, False), per_pixel.mean())
    valid = target != 255
    torch.testing.assert_close(weighted.term(up, target, False),
                               per_pixel[valid].sum() / w[target[valid]].sum())
    # same main term either way; totals differ only through the aux term
    main_up = F.interpolate(scores[1], size=(8, 10), mode="bilinear", align_corners=True)
    torch.testing.assert_close(official.ohem(main_up, target), weighted.ohem(main_up, target))
    assert not torch.isclose(official(scores, target), weighted(scores, target))


def test_ohem_keeps_at_least_min_kept_hardest_pixels():
    scores, target = _data(1)
    crit = OhemCrossEntropy(255, [1.0], thresh=0.0, min_kept=7)
    up = F.interpolate(scores[1], size=(8, 10), mode="bilinear", align_corners=True)
    valid = target != 255
    prob = F.softmax(up, 1).gather(1, target.clamp(max=2).unsqueeze(1)).squeeze(1)[valid]
    losses = F.cross_entropy(up, target, ignore_index=255, reduction="none")[valid]
    order = prob.argsort()
    # threshold is the 8th smallest probability: exactly the 7 hardest pixels are kept
    torch.testing.assert_close(crit.ohem(up, target), losses[order[:7]].mean())


def test_ohem_with_every_pixel_ignored_is_zero_not_nan():
    scores, target = _data()
    target[:] = 255
    score = scores[1].clone().requires_grad_()
    loss = OhemCrossEntropy(255, [1.0], min_kept=5)(score, target)
    assert loss.item() == 0.0
    loss.backward()
    assert score.grad is not None


def test_build_criterion_checks_balance_weights_and_picks_ohem():
    cfg = get_config(None, ["MODEL.NAME", "seg_hrnet_ocr", "MODEL.NUM_OUTPUTS", "2"])
    with pytest.raises(ValueError, match=r"LOSS.BALANCE_WEIGHTS \[1.0\] needs one weight per model output"):
        build_criterion(cfg)
    cfg = get_config(None, ["MODEL.NUM_OUTPUTS", "2", "LOSS.BALANCE_WEIGHTS", "[0.4, 1]",
                            "LOSS.USE_OHEM", "True", "TRAIN.IGNORE_LABEL", "255"])
    crit = build_criterion(cfg, torch.tensor([1.0, 2.0]))
    assert isinstance(crit, OhemCrossEntropy) and crit.ignore_label == 255
    assert torch.equal(crit.weight, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="OHEM_AUX_MEAN"):
        build_criterion(get_config(None, ["LOSS.USE_OHEM", "True", "LOSS.OHEM_AUX_MEAN", "median"]))


def test_soft_skeleton_thins_a_wide_line_to_its_centre():

    mask = torch.zeros(1, 1, 20, 30)
    mask[0, 0, :, 10:15] = 1  # 5 px wide, columns 10..14
    skel = soft_skeleton(mask, iters=3)[0, 0]
    cols = skel[5:15].nonzero()[:, 1].unique().tolist()
    assert cols == [12]  # the centre column, away from the ends
    assert skel.max() <= 1.0 and skel[mask[0, 0] == 0].abs().max() == 0


def test_skeleton_recall_term_is_opt_in_and_rewards_found_wires():

    cfg_file = REPO / "experiments" / "daodixian_seg" / "seg_hrnet_ocr_w18_small_v1_demo.yaml"
    assert isinstance(build_criterion(get_config(cfg_file)), CrossEntropy)  # official default
    crit = build_criterion(get_config(cfg_file, ["LOSS.SKELETON_RECALL", "2.0"]))
    assert isinstance(crit, SkeletonRecall)
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, :, 7:9] = 1
    good = torch.zeros(1, 2, 16, 16)
    good[:, 1] = (target == 1).float() * 20 - 10
    good[:, 0] = -good[:, 1]
    bad = -good
    base = crit.base
    assert crit([good * 0.1, good], target) - base([good * 0.1, good], target) < 1e-3
    bad_gap = crit([bad * 0.1, bad], target) - base([bad * 0.1, bad], target)
    assert bad_gap == pytest.approx(2.0, abs=1e-3)
    no_wire = torch.zeros_like(target)
    assert crit([bad, bad], no_wire) == base([bad, bad], no_wire)
    x = good.clone().requires_grad_(True)
    crit([x * 0.1, x], target).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_soft_dice_term_is_opt_in_and_is_one_minus_soft_f1():

    cfg_file = REPO / "experiments" / "daodixian_seg" / "seg_hrnet_ocr_w18_small_v1_demo.yaml"
    crit = build_criterion(get_config(cfg_file, ["LOSS.DICE", "0.5"]))
    assert isinstance(crit, SoftDice) and isinstance(crit.base, CrossEntropy)
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, :, 7:9] = 1  # 32 wire pixels
    target[0, 0, :] = 255  # ignored: neither counts
    logits = torch.zeros(1, 2, 16, 16)
    logits[:, 1] = torch.where(target == 1, 3.0, -3.0)
    logits[:, 0] = -logits[:, 1]
    base = crit.base
    gap = crit([logits, logits], target) - base([logits, logits], target)
    p = torch.sigmoid(torch.tensor(6.0))  # softmax of (+3, -3): the wire probability on wires
    q = 1 - p  # and off them
    n_wire, n_bg = 30.0, 15 * 16 - 30.0
    dice = (2 * p * n_wire + 1) / (p * n_wire + q * n_bg + n_wire + 1)
    assert gap.item() == pytest.approx(0.5 * (1 - dice.item()), rel=1e-4)
    # a perfect decision costs almost nothing, the inverse costs the full weight
    sure = logits * 10
    assert (crit([sure, sure], target) - base([sure, sure], target)).item() < 1e-3
    assert (crit([-sure, -sure], target) - base([-sure, -sure], target)).item() == pytest.approx(0.5, abs=1e-2)
    x = logits.clone().requires_grad_(True)
    crit([x, x], target).backward()
    assert torch.isfinite(x.grad).all() and x.grad[0, 1][target[0] == 1].lt(0).all()


def test_wire_terms_stack_and_reject_negative_weights():

    cfg_file = REPO / "experiments" / "daodixian_seg" / "seg_hrnet_ocr_w18_small_v1_demo.yaml"
    crit = build_criterion(get_config(cfg_file, ["LOSS.DICE", "1.0", "LOSS.SKELETON_RECALL", "1.0"]))
    assert isinstance(crit, SoftDice) and isinstance(crit.base, SkeletonRecall)
    assert crit.ignore_label == 255 and crit.weight is None
    scores, target = _data()
    target = target.clamp(max=1).masked_fill(target == 255, 255)
    two = [s[:, :2] for s in scores]
    assert torch.isfinite(crit(two, target))
    with pytest.raises(ValueError, match="LOSS.DICE"):
        build_criterion(get_config(cfg_file, ["LOSS.DICE", "-1"]))


def test_ohem_reads_nothing_back_to_the_host():
    """No `.item()` and no boolean indexing (each a GPU sync): the whole selection traces as one
    graph with static shapes, which torch.compile refuses otherwise."""
    scores, target = _data(1)
    up = F.interpolate(scores[1], size=(8, 10), mode="bilinear", align_corners=True)
    crit = OhemCrossEntropy(255, [1.0], thresh=0.7, min_kept=7)
    graph = torch.compile(crit.ohem, backend="eager", fullgraph=True, dynamic=False)
    torch.testing.assert_close(graph(up, target), crit.ohem(up, target))
    for min_kept in (1, 7, 10_000):  # kept count below, inside and beyond the labelled pixels
        crit.min_kept = min_kept
        valid = target != 255
        prob = F.softmax(up, 1).gather(1, target.clamp(max=2).unsqueeze(1)).squeeze(1)[valid]
        losses = F.cross_entropy(up, target, ignore_index=255, reduction="none")[valid]
        ordered, order = prob.sort()
        threshold = max(ordered[min(min_kept, ordered.numel() - 1)].item(), crit.thresh)
        official = losses[order][ordered < threshold].mean()  # the official selection
        torch.testing.assert_close(crit.ohem(up, target), official)

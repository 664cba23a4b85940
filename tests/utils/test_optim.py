"""Poly learning rate and the official NONBACKBONE parameter groups."""

import pytest
import torch
from torch import nn

from lib.config import get_config
from lib.utils.optim import PolySchedule, build_optimizer, param_groups, poly_lr, set_poly_lr


def test_poly_lr_values():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(0.01, 99, 100) == pytest.approx(0.01 * 0.01**0.9)
    assert poly_lr(0.01, 100, 100) == 0.0
    assert poly_lr(0.01, 120, 100) == 0.0  # never negative (or complex)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 1)
        self.ocr_distri_head = nn.Conv2d(4, 4, 1)
        self.cls_head = nn.Conv2d(4, 2, 1)


def test_param_groups_split_by_keywords_and_follow_poly():
    cfg = get_config(
        None,
        [
            "TRAIN.NONBACKBONE_KEYWORDS",
            "['ocr', 'cls_head']",
            "TRAIN.NONBACKBONE_MULT",
            "10",
            "TRAIN.LR",
            "0.02",
            "TRAIN.WD",
            "0.0005",
            "TRAIN.NESTEROV",
            "True",
        ],
    )
    model = Tiny()
    opt = build_optimizer(cfg, model)
    assert len(opt.param_groups) == 2
    ids = [{id(p) for p in g["params"]} for g in opt.param_groups]
    assert ids[0] == {id(p) for p in model.conv1.parameters()}
    assert ids[1] == {
        id(p) for m in (model.ocr_distri_head, model.cls_head) for p in m.parameters()
    }
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.02, 0.2])
    assert opt.defaults["nesterov"] and opt.defaults["weight_decay"] == 0.0005
    lr = set_poly_lr(opt, 0.02, 30, 100)
    assert lr == pytest.approx(0.02 * 0.7**0.9)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([lr, 10 * lr])
    # the EXTRA_EPOCH phase uses another base lr and keeps the multiplier
    set_poly_lr(opt, 0.001, 0, 10)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.001, 0.01])


def test_single_group_without_keywords():
    groups = param_groups(Tiny(), 0.01, [], 10)
    assert len(groups) == 1 and len(groups[0]["params"]) == 6


def test_unknown_optimizer_names_the_key():
    cfg = get_config(None, ["TRAIN.OPTIMIZER", "rmsprop"])
    with pytest.raises(ValueError, match="TRAIN.OPTIMIZER"):
        build_optimizer(cfg, Tiny())


def test_poly_schedule_of_a_phase_sets_every_group_from_the_iteration():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    groups = param_groups(model, 0.01, ["1."], 10)
    opt = torch.optim.SGD(groups, lr=0.01)
    main = PolySchedule(0.01, 100)
    assert main.step(opt, 30) == poly_lr(0.01, 30, 100)
    assert [g["lr"] for g in opt.param_groups] == [poly_lr(0.01, 30, 100), poly_lr(0.01, 30, 100) * 10]
    extra = PolySchedule(0.001, 20)  # the EXTRA_EPOCH phase keeps the groups' ratio
    assert extra.step(opt, 5) == poly_lr(0.001, 5, 20)
    assert opt.param_groups[1]["lr"] == poly_lr(0.001, 5, 20) * 10
    assert main.step(opt, 100) == 0.0

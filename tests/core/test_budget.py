"""TRAIN.TIME_BUDGET's plan: epochs that fit, measured after the first, shrinking never growing."""

from __future__ import annotations

import math

import pytest

from lib.config import ConfigError, get_config
from lib.core import budget
from lib.core.budget import EpochBudget, EpochPlan, finished_epochs
from tests.tools.conftest import DEMO_CFG


def test_plans_after_two_epochs_without_counting_the_first():
    b = EpochBudget(budget_s=600, max_epochs=100)
    assert b.update(1, epoch_s=50.0, spent_s=70.0) == 100  # the first epoch: nothing planned yet
    assert b.planned is None
    # 10 s per epoch measured, 80 s spent (set-up included): 520 s left, 2 % of it kept free
    assert b.update(2, epoch_s=10.0, spent_s=80.0) == 2 + 50
    assert b.planned == 52


def test_a_budget_that_fits_under_half_the_epochs_says_so_and_what_would_fit_them(caplog):
    slow = EpochBudget(budget_s=840, max_epochs=300)
    slow.update(1, 10.0, 20.0)
    with caplog.at_level("WARNING"):
        planned = slow.update(2, 8.0, 28.0)
    assert planned == 2 + math.floor(812 * 0.98 / 8)  # 101
    # 298 epochs of 8 s, the margin kept, after the 28 s spent: 2460 s
    assert "fits 101 of the 300 epochs" in caplog.text and "TRAIN.TIME_BUDGET 42" in caplog.text
    caplog.clear()
    fast = EpochBudget(budget_s=840, max_epochs=300)
    fast.update(1, 3.0, 5.0)
    with caplog.at_level("WARNING"):
        assert fast.update(2, 2.7, 7.7) == 300  # 304 fit: all of them
    assert "fits" not in caplog.text


def test_plan_is_capped_by_end_epoch_and_never_below_what_is_done():
    assert EpochBudget(600, 20).update(1, 5, 5) == 20 and EpochBudget(600, 20).end == 20
    fast = EpochBudget(600, 20)
    fast.update(1, 5, 5)
    assert fast.update(2, 5, 10) == 20
    late = EpochBudget(60, 20)
    late.update(1, 40, 40)
    assert late.update(2, 30, 70) == 2  # over budget already: stop after this epoch


def test_the_plan_follows_the_mean_epoch_time_both_ways_within_the_budget():
    b = EpochBudget(budget_s=300, max_epochs=100)
    b.update(1, 10, 10)
    assert b.update(2, 10, 20) == 29  # 27 more of 10 s in 98 % of 280 s
    for done in range(3, 8):
        assert b.update(done, 10, 10.0 * done) == 29
    # a slow epoch (30 s): the mean of the seven measured is 90 / 7 s; 98 % of the 200 s left
    assert b.update(8, 30, 100) == 8 + 15 == 8 + math.floor(196 / (90 / 7))
    spent = 100.0
    for done in range(9, 40):  # then fast ones: the plan grows back, never past END_EPOCH
        spent += 2
        planned = b.update(done, 2, spent)
        assert done <= planned <= 100
        assert spent + (planned - done) * (sum(b.times[1:]) / len(b.times[1:])) <= 300
    assert planned > 29


def test_a_resumed_budget_keeps_its_plan_only_under_the_same_settings():
    saved = EpochBudget(300, 100, planned=30).state(120.0)
    same = EpochBudget.resumed(300, 100, saved)
    assert (same.planned, same.spent_s, same.end) == (30, 120.0, 30)
    other = EpochBudget.resumed(600, 100, saved)
    assert other.planned is None and other.spent_s == 120.0 and other.end == 100
    assert EpochBudget.resumed(300, 100, None).spent_s == 0.0


def test_finished_epochs_reads_the_saved_plan():
    cfg = get_config(str(DEMO_CFG), ["TRAIN.END_EPOCH", "100", "TRAIN.TIME_BUDGET", "5"])
    ckpt = {"epoch": 42, "time_budget": EpochBudget(300, 100, planned=42).state(0.0)}
    assert finished_epochs(cfg, ckpt) == 42
    assert finished_epochs(cfg, {"epoch": 42}) == 100
    other = get_config(str(DEMO_CFG), ["TRAIN.END_EPOCH", "120", "TRAIN.TIME_BUDGET", "5"])
    assert finished_epochs(other, ckpt) == 120
    off = get_config(str(DEMO_CFG), ["TRAIN.END_EPOCH", "100"])
    assert finished_epochs(off, ckpt) == 100


@pytest.mark.parametrize(
    "opts, words",
    [
        (["TRAIN.TIME_BUDGET", "-1"], "TRAIN.TIME_BUDGET is -1.0"),
        (["TRAIN.TIME_BUDGET", "ten"], "TRAIN.TIME_BUDGET expects float"),
        (["TRAIN.TIME_BUDGET", "5", "TRAIN.EXTRA_EPOCH", "3"], "main phase only"),
    ],
)
def test_budget_values_no_run_can_honour_are_one_line_errors(opts, words):
    with pytest.raises(ConfigError, match=words) as err:
        get_config(str(DEMO_CFG), opts)
    assert "\n" not in str(err.value)


def test_epoch_plan_validates_every_interval_and_last_and_stops_where_asked():
    cfg = get_config(str(DEMO_CFG), ["TRAIN.END_EPOCH", "5", "TRAIN.EXTRA_EPOCH", "2",
                                     "TRAIN.EXTRA_LR", "0.001", "TRAIN.EVAL_INTERVAL", "3",
                                     "TRAIN.STOP_AFTER_EPOCH", "4"])
    plan = EpochPlan(cfg, budget.clock())
    assert (plan.main_epochs, plan.end, plan.checkpoint_state()) == (5, 7, {})
    assert [e for e in range(1, 8) if plan.validates(e)] == [3, 6, 7]
    assert [e for e in range(1, 8) if plan.stops_early(e)] == [4]
    last = get_config(str(DEMO_CFG), ["TRAIN.END_EPOCH", "4", "TRAIN.STOP_AFTER_EPOCH", "4"])
    assert not EpochPlan(last, budget.clock()).stops_early(4)  # the run ends there anyway


def test_epoch_plan_under_a_budget_plans_from_the_epochs_and_saves_the_time(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(budget, "clock", lambda: now[0])
    cfg = get_config(str(DEMO_CFG), ["TRAIN.END_EPOCH", "20", "TRAIN.TIME_BUDGET", "5.5"])
    plan = EpochPlan(cfg, started=now[0])
    for done in (1, 2):
        now[0] += 60.0
        plan.trained(done)
    assert plan.main_epochs == plan.end == 5
    assert plan.checkpoint_state()["time_budget"] == {"budget_s": 330.0, "max_epochs": 20,
                                                      "spent_s": 120.0, "planned": 5}

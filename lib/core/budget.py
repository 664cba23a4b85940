"""How many epochs a run trains (`EpochPlan`), and the time budget for the main training
phase (ours; `TRAIN.TIME_BUDGET`, minutes; 0: off; `EpochBudget`).

A run given a budget trains as many main-phase epochs as fit in it, at most TRAIN.END_EPOCH:
after its first two epochs it measures how long an epoch takes (the first one, which starts
the loader workers and warms the kernels, is not counted) and plans the number of epochs that
fill 98 % of the time left; the poly learning-rate schedule then runs down to 0 over the
planned epochs. After every later epoch the plan is made again from the mean time of all the
epochs measured so far, so it follows a machine that turns busier or freer (a plan one epoch
longer or shorter moves the learning rate by well under 1 %). The budget counts the run's wall
time from its start (set-up, training epochs, validations in between; not the final
validation). The plan and the time spent are saved in every checkpoint, so a resumed run
keeps both and a killed run does not get its time back.

Why: "the best model in 15 minutes" is a number of epochs that depends on the machine, its
load and the number of photos (the real-photo recipe's 210 epochs of 40 photos of 540x360 on 2
cores took 11-13 minutes here on a fast day and would take 15-23 on a slow one, and ten times
that for 400 photos); a budget in minutes holds on every machine.
A run with a budget is not reproducible bit for bit (its epoch count, and so its learning
rates, depend on the machine's speed); the count it trained is logged and saved.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from lib.utils.distributed import broadcast_object

logger = logging.getLogger(__name__)

clock = time.monotonic  # seconds; tests replace it
MARGIN = 0.02  # of the time left, kept free when planning: room for an epoch's jitter


@dataclass
class EpochBudget:
    """How many main-phase epochs fit in `budget_s` seconds: `end` is the planned epoch count
    (`max_epochs` until the plan is made); `spent_s` counts time of earlier, resumed runs."""

    budget_s: float
    max_epochs: int
    spent_s: float = 0.0
    planned: int | None = None
    times: list[float] = field(default_factory=list)  # this run's epoch durations

    @property
    def end(self) -> int:
        return self.planned if self.planned is not None else self.max_epochs

    def update(self, epochs_done: int, epoch_s: float, spent_s: float) -> int:
        """Record an epoch that took `epoch_s` (the run has now spent `spent_s` in all, earlier
        runs included) after which `epochs_done` epochs are done; returns the planned end."""
        self.spent_s = spent_s
        self.times.append(epoch_s)
        measured = self.times[1:]  # the first epoch of a process starts workers, warms kernels
        if not measured:
            return self.end
        per_epoch = sum(measured) / len(measured)
        first = self.planned is None
        before = self.end
        self.planned = self._fit(epochs_done, (self.budget_s - spent_s) * (1 - MARGIN), per_epoch)
        if first:
            logger.info(
                "TRAIN.TIME_BUDGET %.1f min: %.1f s per epoch, %.1f min spent: %d epochs planned"
                "%s", self.budget_s / 60, per_epoch, spent_s / 60, self.planned,
                f" (at most TRAIN.END_EPOCH {self.max_epochs})" if self.planned == self.max_epochs
                else "",
            )  # fmt: skip
            if self.planned < self.max_epochs / 2:
                # a slower machine or more photos: the schedule is cut short, and the model with
                # it (the real-photo recipe: 5-fold F1 0.881 at ~100 epochs against 0.921 at 150)
                needed = spent_s + (self.max_epochs - epochs_done) * per_epoch / (1 - MARGIN)
                logger.warning(
                    "TRAIN.TIME_BUDGET %.1f min fits %d of the %d epochs (TRAIN.END_EPOCH) on this "
                    "machine: expect a weaker model than the recipe's measurements; all of them "
                    "need about TRAIN.TIME_BUDGET %d", self.budget_s / 60, self.planned,
                    self.max_epochs, math.ceil(needed / 60),
                )  # fmt: skip
        elif self.planned != before:
            logger.debug("TRAIN.TIME_BUDGET: %.2f s per epoch: %d epochs planned instead of %d",
                         per_epoch, self.planned, before)
        return self.planned

    def _fit(self, epochs_done: int, left_s: float, per_epoch: float) -> int:
        more = math.floor(left_s / per_epoch) if per_epoch > 0 else self.max_epochs
        return max(epochs_done, min(self.max_epochs, epochs_done + max(0, more)))

    def state(self, spent_s: float) -> dict:
        """What a checkpoint keeps after `spent_s` seconds in all (`resumed` reads it back)."""
        self.spent_s = spent_s
        return {"budget_s": self.budget_s, "max_epochs": self.max_epochs,
                "spent_s": spent_s, "planned": self.planned}

    @classmethod
    def resumed(cls, budget_s: float, max_epochs: int, saved: dict | None) -> EpochBudget:
        """The budget of a resumed run: the saved plan and time spent when the checkpoint was
        made under the same budget and TRAIN.END_EPOCH, else a fresh one (spent time kept)."""
        if not saved:
            return cls(budget_s, max_epochs)
        same = saved.get("budget_s") == budget_s and saved.get("max_epochs") == max_epochs
        return cls(budget_s, max_epochs, spent_s=float(saved.get("spent_s", 0.0)),
                   planned=saved.get("planned") if same else None)


def finished_epochs(cfg, ckpt: dict) -> int:
    """The epoch count a finished run of `cfg` has in its checkpoint `ckpt`: the plan it saved
    under the same TRAIN.TIME_BUDGET and TRAIN.END_EPOCH, else END_EPOCH + EXTRA_EPOCH."""
    if cfg.TRAIN.TIME_BUDGET > 0:  # EXTRA_EPOCH is 0 then (lib.config checks)
        return EpochBudget.resumed(cfg.TRAIN.TIME_BUDGET * 60, cfg.TRAIN.END_EPOCH,
                                   ckpt.get("time_budget")).end
    return cfg.TRAIN.END_EPOCH + cfg.TRAIN.EXTRA_EPOCH


class EpochPlan:
    """The epochs of a run and when it validates and stops: TRAIN.END_EPOCH main-phase epochs
    (from TRAIN.LR), then TRAIN.EXTRA_EPOCH (from EXTRA_LR); under TRAIN.TIME_BUDGET the
    main phase's count is planned from the epochs' speed (`EpochBudget`; rank 0's plan on
    every rank). `started`: the `clock()` time the run started; `saved`: the checkpoint's
    TRAIN.TIME_BUDGET record of a resumed run (or None)."""

    def __init__(self, cfg, started: float, saved: dict | None = None) -> None:
        self.max_epochs, self.extra_epochs = cfg.TRAIN.END_EPOCH, cfg.TRAIN.EXTRA_EPOCH
        self.eval_interval = max(1, cfg.TRAIN.EVAL_INTERVAL)
        self.stop_after = cfg.TRAIN.STOP_AFTER_EPOCH
        self.budget = (EpochBudget.resumed(cfg.TRAIN.TIME_BUDGET * 60, cfg.TRAIN.END_EPOCH, saved)
                       if cfg.TRAIN.TIME_BUDGET > 0 else None)
        self.spent_before = self.budget.spent_s if self.budget else 0.0  # by earlier runs
        self.started, self.mark = started, clock()

    @property
    def main_epochs(self) -> int:
        """Epochs of the main phase: TRAIN.END_EPOCH, or the number planned for the budget."""
        return self.budget.end if self.budget else self.max_epochs

    @property
    def end(self) -> int:
        """The epoch count of the whole run (main phase + TRAIN.EXTRA_EPOCH)."""
        return self.budget.end if self.budget else self.max_epochs + self.extra_epochs

    def spent_s(self) -> float:
        """Wall time of the run so far, earlier (resumed) runs included."""
        return self.spent_before + clock() - self.started

    def trained(self, epochs_done: int) -> None:
        """An epoch was trained; under a budget, plan again from the time since the last plan
        (that epoch and the validation before it)."""
        if self.budget is None:
            return
        now = clock()
        self.budget.update(epochs_done, now - self.mark, self.spent_before + now - self.started)
        self.budget.planned = broadcast_object(self.budget.planned)
        self.mark = now

    def validates(self, epochs_done: int) -> bool:
        """TRAIN.EVAL_INTERVAL: validate every that many epochs, and after the last one."""
        return epochs_done % self.eval_interval == 0 or epochs_done == self.end

    def stops_early(self, epochs_done: int) -> bool:
        """TRAIN.STOP_AFTER_EPOCH: stop (to resume later) after that many epochs, unless the
        run ends there anyway."""
        return epochs_done == self.stop_after < self.end

    def checkpoint_state(self) -> dict:
        """What a checkpoint keeps of the plan: {"time_budget": ...} under a budget, else {}."""
        return {"time_budget": self.budget.state(self.spent_s())} if self.budget else {}

    def log_summary(self) -> None:
        if self.budget is not None:
            logger.info("TRAIN.TIME_BUDGET %.1f min: %d epochs trained in %.1f min",
                        self.budget.budget_s / 60, self.end, self.spent_s() / 60)

"""Optimizer with the official parameter groups, and the poly learning-rate schedule."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn, optim


def poly_lr(base_lr: float, it: int, max_it: int, power: float = 0.9) -> float:
    """Official poly schedule: base_lr * (1 - it / max_it) ** power (0 once it >= max_it)."""
    return base_lr * max(0.0, 1.0 - it / max_it) ** power


def param_groups(model: nn.Module, base_lr: float, keywords, mult: float) -> list[dict]:
    """One group at `base_lr`, or two when `keywords` is set (official NONBACKBONE_KEYWORDS).

    A parameter whose name contains any keyword goes to the second group with lr `base_lr * mult`;
    every group carries `initial_lr`, the base of its poly schedule.
    """
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    if not keywords:
        return [{"params": [p for _, p in named], "lr": base_lr, "initial_lr": base_lr}]
    backbone = [p for k, p in named if not any(w in k for w in keywords)]
    head = [p for k, p in named if any(w in k for w in keywords)]
    return [
        {"params": backbone, "lr": base_lr, "initial_lr": base_lr},
        {"params": head, "lr": base_lr * mult, "initial_lr": base_lr * mult},
    ]


def build_optimizer(cfg, model: nn.Module) -> optim.Optimizer:
    """SGD (momentum, weight decay, nesterov) as officially, or AdamW; groups from `param_groups`."""
    groups = param_groups(
        model, cfg.TRAIN.LR, list(cfg.TRAIN.NONBACKBONE_KEYWORDS), cfg.TRAIN.NONBACKBONE_MULT
    )
    name = cfg.TRAIN.OPTIMIZER.lower()
    if name == "sgd":
        return optim.SGD(
            groups,
            lr=cfg.TRAIN.LR,
            momentum=cfg.TRAIN.MOMENTUM,
            weight_decay=cfg.TRAIN.WD,
            nesterov=cfg.TRAIN.NESTEROV,
        )
    if name == "adamw":
        return optim.AdamW(groups, lr=cfg.TRAIN.LR, weight_decay=cfg.TRAIN.WD)
    raise ValueError(
        f"config key TRAIN.OPTIMIZER: unknown optimizer {cfg.TRAIN.OPTIMIZER!r} (sgd | adamw)"
    )


def set_poly_lr(optimizer: optim.Optimizer, base_lr: float, it: int, max_it: int) -> float:
    """Set every group's lr for iteration `it`; groups keep their ratio to `base_lr`.

    The ratio comes from each group's `initial_lr` relative to the first group, so the
    EXTRA_EPOCH phase (another base lr) keeps the NONBACKBONE_MULT. Returns the first group's lr.
    """
    lr = poly_lr(base_lr, it, max_it)
    first = optimizer.param_groups[0]["initial_lr"]
    for group in optimizer.param_groups:
        group["lr"] = lr * group["initial_lr"] / first
    return lr


@dataclass(frozen=True)
class PolySchedule:
    """The poly schedule of one training phase: `base_lr` down to 0 over `iters` iterations
    (the main phase: TRAIN.LR over TRAIN.END_EPOCH epochs; the extra one: EXTRA_LR over
    EXTRA_EPOCH). `step(optimizer, it)` sets the lr of global iteration `it` of the phase from
    `it` itself, not from a count of earlier calls, so a resumed run continues exactly."""

    base_lr: float
    iters: int

    def step(self, optimizer: optim.Optimizer, it: int) -> float:
        """Set every group's lr for iteration `it` (see `set_poly_lr`); returns the first's."""
        return set_poly_lr(optimizer, self.base_lr, it, self.iters)

"""train_one_epoch / validate with a tiny model: lr per iteration, frozen layers, NaN stop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lib.core.function import NonFiniteLossError, train_one_epoch, validate
from lib.utils.lr import poly_lr


class TinySeg(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.cls_head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.cls_head(torch.relu(self.bn1(self.conv1(x))))


def batches(n=3, size=8):
    g = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(2, 3, size, size, generator=g),
            torch.randint(0, 2, (2, size, size), generator=g),
            None,
            None,
        )
        for _ in range(n)
    ]


class LrRecorder(torch.optim.SGD):
    def step(self, closure=None):
        self.seen.append(self.param_groups[0]["lr"])
        return super().step(closure)


def run(model, loader, criterion=None, **kw):
    opt = LrRecorder(model.parameters(), lr=0.1, momentum=0.9)
    opt.seen = []
    for g in opt.param_groups:
        g["initial_lr"] = 0.1
    stats = train_one_epoch(
        model,
        criterion or nn.CrossEntropyLoss(),
        opt,
        loader,
        epoch=kw.pop("epoch", 1),
        base_lr=0.1,
        first_iter=3,
        max_iters=12,
        device=torch.device("cpu"),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        **kw,
    )
    return opt, stats


def test_each_iteration_uses_the_poly_lr_of_its_global_index():
    opt, stats = run(TinySeg(), batches(3))
    assert opt.seen == pytest.approx([poly_lr(0.1, it, 12) for it in (3, 4, 5)])
    assert stats["lr"] == pytest.approx(poly_lr(0.1, 5, 12))


def test_frozen_layers_keep_weights_and_bn_statistics():
    model = TinySeg()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run(model, batches(2), freeze=["conv1", "bn1"])
    after = model.state_dict()
    for key in ("conv1.weight", "conv1.bias", "bn1.weight", "bn1.running_mean", "bn1.running_var"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["cls_head.weight"], after["cls_head.weight"])


def test_nan_loss_names_epoch_and_iteration():
    class NanOnSecond(nn.Module):
        calls = 0

        def forward(self, out, target):
            NanOnSecond.calls += 1
            loss = nn.functional.cross_entropy(out, target)
            return loss * float("nan") if NanOnSecond.calls == 2 else loss

    with pytest.raises(NonFiniteLossError, match="epoch 7 iteration 1"):
        run(TinySeg(), batches(3), criterion=NanOnSecond(), epoch=7)


def test_validate_reports_main_output_and_loss():
    model = TinySeg()

    def criterion(outputs, target):  # validate passes the list of outputs, like our criterion
        return nn.functional.cross_entropy(outputs[-1], target)

    res = validate(
        model,
        criterion,
        batches(2),
        num_classes=2,
        ignore_label=255,
        device=torch.device("cpu"),
    )
    assert sum(map(sum, res["confusion_matrix"])) == 2 * 2 * 8 * 8
    assert 0 <= res["miou"] <= 1 and res["loss"] > 0 and len(res["miou_per_output"]) == 1


@pytest.mark.parametrize("amp, channels_last", [("bf16", False), ("bf16", True)])
def test_mixed_precision_and_channels_last_train_on_cpu(amp, channels_last):
    model = TinySeg()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.param_groups[0]["initial_lr"] = 0.1
    stats = train_one_epoch(
        model,
        nn.CrossEntropyLoss(),
        opt,
        batches(2),
        epoch=0,
        base_lr=0.1,
        first_iter=0,
        max_iters=2,
        device=torch.device("cpu"),
        amp=amp,
        channels_last=channels_last,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
    )
    assert torch.isfinite(torch.tensor(stats["loss"]))


def test_fp16_on_cpu_is_refused_with_the_key_named():
    model = TinySeg()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="TRAIN.AMP fp16 needs a CUDA device"):
        train_one_epoch(model, nn.CrossEntropyLoss(), opt, batches(1), epoch=0, base_lr=0.1,
                        first_iter=0, max_iters=1, device=torch.device("cpu"), amp="fp16",
                        scaler=torch.amp.GradScaler("cpu", enabled=False))

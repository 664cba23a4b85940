"""train_one_epoch / validate with a tiny model: lr per iteration, frozen layers, NaN stop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lib.core import evaluation, training
from lib.core.training import NonFiniteLossError, train_one_epoch, validate
from lib.utils.optim import PolySchedule, poly_lr


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
        schedule=PolySchedule(0.1, 12),
        first_iter=3,
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
        schedule=PolySchedule(0.1, 2),
        first_iter=0,
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
        train_one_epoch(model, nn.CrossEntropyLoss(), opt, batches(1), epoch=0, schedule=PolySchedule(0.1, 1),
                        first_iter=0, device=torch.device("cpu"), amp="fp16",
                        scaler=torch.amp.GradScaler("cpu", enabled=False))


class Counter:
    """Counts calls of a function it wraps."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_loss_is_read_and_reduced_only_at_checks(monkeypatch):
    # 10 iterations, PRINT_FREQ 5, global iterations 3..12: checks at 5, 10 and the last one

    reduce = Counter(training.all_reduce_sum)
    monkeypatch.setattr(training, "all_reduce_sum", reduce)
    item = Counter(torch.Tensor.item)
    tolist = Counter(torch.Tensor.tolist)
    monkeypatch.setattr(torch.Tensor, "item", lambda self: item(self))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: tolist(self))
    torch.manual_seed(0)
    _, stats = run(TinySeg(), batches(10), print_freq=5)
    assert reduce.calls == 3
    assert item.calls + tolist.calls == 3  # one host read per check, none in between
    # the epoch loss is still the mean over every iteration
    torch.manual_seed(0)
    plain = run(TinySeg(), batches(10), print_freq=1)[1]
    assert stats["loss"] == pytest.approx(plain["loss"])


def test_nan_between_checks_names_the_iteration_where_it_happened():
    class NanOnFourth(nn.Module):
        calls = 0

        def forward(self, out, target):
            NanOnFourth.calls += 1
            loss = nn.functional.cross_entropy(out, target)
            return loss * float("inf") if NanOnFourth.calls >= 4 else loss

    with pytest.raises(NonFiniteLossError, match="loss is inf at epoch 2 iteration 3 "):
        run(TinySeg(), batches(8), criterion=NanOnFourth(), epoch=2, print_freq=100)


def test_validate_with_an_empty_shard_still_reports():
    res = validate(TinySeg(), lambda o, t: o[-1].sum(), [], num_classes=2, ignore_label=255,
                   device=torch.device("cpu"))
    assert res["miou_per_output"] == [0.0] and res["loss"] == 0.0


def test_testval_gives_channels_last_inputs_when_asked():

    class Recorder(TinySeg):
        formats: list = []

        def forward(self, x):
            self.formats.append(x.is_contiguous(memory_format=torch.channels_last))
            return super().forward(x)

    class Loader(list):
        dataset = type("D", (), {"has_labels": True})()

    loader = Loader([(torch.randn(1, 3, 16, 16), torch.zeros(1, 16, 16, dtype=torch.long), None,
                      ["a"])])
    for channels_last in (False, True):
        model = Recorder().eval()
        Recorder.formats = []
        evaluation.testval(model, loader, num_classes=2, ignore_label=255, scales=[1.0], flip=False,
                base_size=16, crop_size=(16, 16), channels_last=channels_last)
        assert Recorder.formats and all(f == channels_last for f in Recorder.formats)


def test_validation_in_windows_sees_no_more_than_a_window_and_assembles_the_image():
    net = nn.Conv2d(3, 2, 1)  # pointwise: windows must give exactly the whole image's logits
    seen = []
    net.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))

    def criterion(outputs, target):
        return nn.functional.cross_entropy(outputs[-1], target)

    common = dict(num_classes=2, ignore_label=255, device=torch.device("cpu"))
    whole = validate(net, criterion, batches(2, size=24), **common)
    assert set(seen) == {(24, 24)}
    seen.clear()
    tiled = validate(net, criterion, batches(2, size=24), window=(16, 10), **common)
    assert seen and all(h <= 10 and w <= 16 for h, w in seen)  # overlapping windows
    assert tiled["confusion_matrix"] == whole["confusion_matrix"]
    assert abs(tiled["loss"] - whole["loss"]) < 1e-5
    seen.clear()
    fits = validate(net, criterion, batches(2, size=24), window=(32, 32), **common)
    assert set(seen) == {(24, 24)} and fits == whole  # one window: the official path itself


def test_validation_settings_from_the_config_validate_as_the_keyword_form():
    from lib.config import get_config
    from lib.core.training import ValidationSettings

    cfg = get_config(None, ["DATASET.NUM_CLASSES", "2", "TRAIN.IGNORE_LABEL", "255",
                            "TEST.VAL_WINDOW", "[16, 10]"])
    settings = ValidationSettings.from_cfg(cfg)
    assert (settings.num_classes, settings.ignore_label, settings.window) == (2, 255, (16, 10))

    def criterion(outputs, target):
        return nn.functional.cross_entropy(outputs[-1], target)

    net, cpu = nn.Conv2d(3, 2, 1), torch.device("cpu")
    grouped = validate(net, criterion, batches(2, size=24), settings, device=cpu)
    loose = validate(net, criterion, batches(2, size=24), num_classes=2, ignore_label=255,
                     align_corners=cfg.MODEL.ALIGN_CORNERS, window=(16, 10), device=cpu)
    assert grouped == loose


def test_step_settings_come_from_the_config_or_field_by_field_but_not_both():
    from lib.config import get_config
    from lib.core.training import StepSettings

    cfg = get_config(None, ["TRAIN.AMP", "bf16", "TRAIN.FREEZE_LAYERS", "conv1, bn1",
                            "TRAIN.FREEZE_EPOCHS", "2", "PRINT_FREQ", "7"])
    assert StepSettings.from_cfg(cfg, epoch=1) == StepSettings("bf16", False, ("conv1", "bn1"), 7)
    assert StepSettings.from_cfg(cfg, epoch=2).freeze == ()  # the frozen epochs are over
    model = TinySeg()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kw = dict(epoch=0, schedule=PolySchedule(0.1, 4), first_iter=0, device=torch.device("cpu"),
              scaler=torch.amp.GradScaler("cpu", enabled=False))
    with pytest.raises(TypeError, match="print_freq given both alone and in a StepSettings"):
        train_one_epoch(model, nn.CrossEntropyLoss(), opt, batches(1), step=StepSettings(),
                        print_freq=3, **kw)
    with pytest.raises(TypeError, match="colour"):
        train_one_epoch(model, nn.CrossEntropyLoss(), opt, batches(1), colour=1, **kw)

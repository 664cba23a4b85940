"""tools/train.py end to end on a tiny generated dataset: files, exact resume, NaN stop."""

from __future__ import annotations

import hashlib
import shutil

import torch

from lib.core import training
from lib.utils.checkpoint import load_file
from tests.tools.conftest import DEMO_CFG, tiny_opts
from tools import test as test_tool
from tools import train as train_tool

NAME = DEMO_CFG.stem


def interrupt_in_epoch_two(monkeypatch):
    """Make training raise KeyboardInterrupt as epoch 2 starts (epoch 1 saved, as Ctrl-C would
    leave it); returns the real train_one_epoch to put back."""
    real = training.train_one_epoch

    def stop(*args, **kwargs):
        if kwargs["epoch"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", stop)
    return real


def out_dir(tmp, sub="output"):
    return tmp / sub / "daodixian_seg" / NAME


def test_parse_args_accepts_both_legacy_local_rank_spellings():
    for flag in (["--local_rank", "1"], ["--local-rank=1"]):
        args = train_tool.parse_args([*flag, "--cfg", "x.yaml", "TRAIN.LR", "0.1"])
        assert args.local_rank == 1 and args.cfg == "x.yaml" and args.opts == ["TRAIN.LR", "0.1"]
    assert train_tool.parse_args([], default_cfg="d.yaml").cfg == "d.yaml"


def test_resume_after_epoch_one_gives_the_same_weights(tiny_data, tmp_path, monkeypatch):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train_tool.main(["--cfg", str(DEMO_CFG), *tiny_opts(tiny_data, full)]) == 0

    real = interrupt_in_epoch_two(monkeypatch)  # as if killed after epoch 1 was saved
    assert train_tool.main(["--cfg", str(DEMO_CFG), *tiny_opts(tiny_data, cut)]) == 130  # Ctrl-C
    assert load_file(out_dir(cut) / "checkpoint.pth.tar")["epoch"] == 1
    assert not (out_dir(cut) / "final_state.pth").exists()
    monkeypatch.setattr(training, "train_one_epoch", real)
    opts = tiny_opts(tiny_data, cut, "TRAIN.RESUME", "True")
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 0

    a = load_file(out_dir(full) / "final_state.pth")
    b = load_file(out_dir(cut) / "final_state.pth")
    assert a.keys() == b.keys()
    assert any(k.startswith("model.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ca = load_file(out_dir(full) / "checkpoint.pth.tar")
    cb = load_file(out_dir(cut) / "checkpoint.pth.tar")
    assert ca["epoch"] == cb["epoch"] == 2 and ca["best_mIoU"] == cb["best_mIoU"]
    assert ca["metrics"] == cb["metrics"]

    # TRAIN.STOP_AFTER_EPOCH: the same stop on purpose (the schedule stays the 2-epoch one)
    stop = tmp_path / "stop"
    opts = tiny_opts(tiny_data, stop, "TRAIN.STOP_AFTER_EPOCH", "1")
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 0
    assert load_file(out_dir(stop) / "checkpoint.pth.tar")["epoch"] == 1
    assert not (out_dir(stop) / "final_state.pth").exists()
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts, "TRAIN.RESUME", "True"]) == 0
    c = load_file(out_dir(stop) / "final_state.pth")
    assert all(torch.equal(a[key], c[key]) for key in a)


def test_nan_loss_stops_and_keeps_saved_files(tiny_data, tmp_path, monkeypatch, capsys):
    build = training.build_criterion
    state = {"epoch": 0}
    real_train = training.train_one_epoch

    def track(*args, **kwargs):
        state["epoch"] = kwargs["epoch"]
        return real_train(*args, **kwargs)

    class NanAfterEpochOne(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, outputs, target):
            loss = self.inner(outputs, target)
            return loss * float("nan") if state["epoch"] == 1 and self.training else loss

    monkeypatch.setattr(
        training, "build_criterion", lambda *a, **k: NanAfterEpochOne(build(*a, **k))
    )
    monkeypatch.setattr(training, "train_one_epoch", track)
    rc = train_tool.main(["--cfg", str(DEMO_CFG), *tiny_opts(tiny_data, tmp_path)])
    assert rc == 1  # partly done: epoch 1 is saved and resumable
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: loss is nan at epoch 1 iteration 0")
    files = out_dir(tmp_path)
    assert load_file(files / "checkpoint.pth.tar")["epoch"] == 1
    assert not (files / "final_state.pth").exists()
    digest = hashlib.sha256((files / "checkpoint.pth.tar").read_bytes()).hexdigest()
    assert (
        train_tool.main(
            ["--cfg", str(DEMO_CFG), *tiny_opts(tiny_data, tmp_path, "TRAIN.RESUME", "True")]
        )
        == 1
    )
    assert hashlib.sha256((files / "checkpoint.pth.tar").read_bytes()).hexdigest() == digest


def test_eval_interval_validates_only_every_n_epochs_and_at_the_end(tiny_data, tmp_path, monkeypatch):
    real = training.validate
    epochs = []

    def counting_validate(*args, **kwargs):
        epochs.append(kwargs["epoch"])
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "validate", counting_validate)
    opts = tiny_opts(tiny_data, tmp_path, "TRAIN.END_EPOCH", "3", "TRAIN.EVAL_INTERVAL", "2")
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 0
    assert epochs == [1, 2]  # after the 2nd epoch (interval) and the 3rd (last)
    ckpt = load_file(out_dir(tmp_path) / "checkpoint.pth.tar")
    assert ckpt["epoch"] == 3 and (out_dir(tmp_path) / "best.pth").is_file()


def test_flags_may_follow_the_overrides():
    args = test_tool.parse_args(["--cfg", "x.yaml", "TRAIN.IGNORE_LABEL", "-1", "--no-save", "TEST.IMAGE_SIZE", "[960, 540]"])
    assert args.save is False and args.opts == ["TRAIN.IGNORE_LABEL", "-1", "TEST.IMAGE_SIZE", "[960, 540]"]
    args = train_tool.parse_args(["--cfg", "x.yaml", "TRAIN.LR", "0.1", "--local-rank=2"])
    assert args.local_rank == 2 and args.opts == ["TRAIN.LR", "0.1"]


def test_ctrl_c_says_where_to_resume_and_a_new_run_keeps_the_old_files(
    tiny_data, tmp_path, monkeypatch, capsys
):
    real = interrupt_in_epoch_two(monkeypatch)
    opts = tiny_opts(tiny_data, tmp_path)
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 130
    ckpt = out_dir(tmp_path) / "checkpoint.pth.tar"
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        f"interrupted: {ckpt} holds epoch 1; run the same command with TRAIN.RESUME True "
        "to continue from there"
    )
    monkeypatch.setattr(training, "train_one_epoch", real)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    # a fresh run into that folder is refused (nothing done: exit 2), files untouched;
    # TRAIN.OVERWRITE replaces them
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "holds an earlier run (checkpoint.pth.tar, best.pth)" in err
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == digest
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts, "TRAIN.OVERWRITE", "True"]) == 0
    assert load_file(ckpt)["epoch"] == 2


def test_a_renamed_yaml_says_which_earlier_run_it_does_not_continue(tiny_data, tmp_path, caplog):
    first, renamed = tmp_path / "a.yaml", tmp_path / "b.yaml"
    shutil.copy(DEMO_CFG, first)
    opts = tiny_opts(tiny_data, tmp_path, "TRAIN.END_EPOCH", "1")
    assert train_tool.main(["--cfg", str(first), *opts]) == 0
    assert "holds a run of this same config" not in caplog.text
    earlier = tmp_path / "output" / "daodixian_seg" / "a"
    assert (earlier / "config.yaml").is_file()
    shutil.copy(DEMO_CFG, renamed)
    assert train_tool.main(["--cfg", str(renamed), *opts]) == 0
    line = [r.getMessage() for r in caplog.records if "same config" in r.getMessage()]
    assert len(line) == 1 and str(earlier) in line[0] and "TRAIN.RESUME True" in line[0]
    caplog.clear()  # another config under a new name says nothing
    third = tmp_path / "c.yaml"
    shutil.copy(DEMO_CFG, third)
    assert train_tool.main(["--cfg", str(third), *opts, "TRAIN.LR", "0.005"]) == 0
    assert "same config" not in caplog.text


def test_time_budget_plans_the_epochs_that_fit_and_resumes_with_its_plan(
    tiny_data, tmp_path, monkeypatch
):
    """TRAIN.TIME_BUDGET on a fake clock where every epoch takes 60 s: 5.5 minutes hold 5 of
    the 20 epochs, the poly schedule ends at 0 on epoch 5, and a run killed after epoch 3 resumes
    with the saved plan and time spent."""
    from lib.core import budget

    now = [1000.0]
    monkeypatch.setattr(budget, "clock", lambda: now[0])
    real = training.train_one_epoch
    lrs = []

    def sixty_seconds(*args, **kwargs):
        now[0] += 60.0
        stats = real(*args, **kwargs)
        lrs.append(stats["lr"])
        return stats

    monkeypatch.setattr(training, "train_one_epoch", sixty_seconds)
    opts = tiny_opts(tiny_data, tmp_path / "full", "TRAIN.END_EPOCH", "20", "TRAIN.TIME_BUDGET", "5.5",
                     "TRAIN.EVAL_INTERVAL", "100")
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 0
    ckpt = load_file(out_dir(tmp_path / "full") / "checkpoint.pth.tar")
    assert ckpt["epoch"] == 5 and len(lrs) == 5
    assert ckpt["time_budget"]["planned"] == 5 and ckpt["time_budget"]["spent_s"] == 300.0
    assert "wire" in ckpt["metrics"]  # the last planned epoch was validated
    # the schedule of 5 epochs, not of 20: the last epoch ends near 0
    assert lrs[-1] < 0.2 * lrs[0] and lrs[2] < lrs[1] < lrs[0]

    def killed_in_epoch_four(*args, **kwargs):
        if kwargs["epoch"] == 3:
            raise KeyboardInterrupt
        return sixty_seconds(*args, **kwargs)

    cut = tmp_path / "cut"
    monkeypatch.setattr(training, "train_one_epoch", killed_in_epoch_four)
    opts = tiny_opts(tiny_data, cut, "TRAIN.END_EPOCH", "20", "TRAIN.TIME_BUDGET", "5.5",
                     "TRAIN.EVAL_INTERVAL", "100")
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 130
    saved = load_file(out_dir(cut) / "checkpoint.pth.tar")
    assert saved["epoch"] == 3 and saved["time_budget"]["planned"] == 5
    monkeypatch.setattr(training, "train_one_epoch", sixty_seconds)
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts, "TRAIN.RESUME", "True"]) == 0
    resumed = load_file(out_dir(cut) / "checkpoint.pth.tar")
    assert resumed["epoch"] == 5 and resumed["time_budget"]["spent_s"] == 300.0
    a = load_file(out_dir(tmp_path / "full") / "final_state.pth")
    b = load_file(out_dir(cut) / "final_state.pth")
    assert all(torch.equal(a[key], b[key]) for key in a)  # the same plan, the same weights


def test_mix_set_adds_its_samples_to_every_epoch_and_resumes_exactly(tiny_data, tmp_path,
                                                                     monkeypatch, caplog):
    lists = tiny_data / "list" / "daodixian_seg"
    # the mixed-in list: the val photos under another root (DATASET.MIX_ROOT)
    mix_root = tmp_path / "mixroot"
    shutil.copytree(tiny_data / "daodixian_seg", mix_root / "daodixian_seg")
    (mix_root / "gen.lst").write_text((lists / "val.lst").read_text())
    mix = ["DATASET.MIX_SET", "gen.lst", "DATASET.MIX_ROOT", str(mix_root),
           "DATASET.MIX_RATIO", "0.5"]
    seen = []
    real_load = training.build_dataset.__globals__["DATASETS"]["daodixian_seg"].load

    def recording_load(self, item):
        seen.append(str(item["image"]))
        return real_load(self, item)

    monkeypatch.setattr(training.build_dataset.__globals__["DATASETS"]["daodixian_seg"], "load",
                        recording_load)
    full = tmp_path / "full"
    caplog.set_level("INFO")
    assert train_tool.main(["--cfg", str(DEMO_CFG), *tiny_opts(tiny_data, full, *mix)]) == 0
    assert "each epoch: 8 samples of" in caplog.text and "and 4 of gen.lst" in caplog.text
    mixed = [p for p in seen if p.startswith(str(mix_root))]
    own = [p for p in seen if not p.startswith(str(mix_root))]
    # 2 epochs of 8 own + 4 mixed (the 3 val photos are validated from the original root)
    assert len(mixed) == 2 * 4 and len(set(mixed)) == 3 and len(own) == 2 * 8 + 2 * 3
    plain = tmp_path / "plain"
    assert train_tool.main(["--cfg", str(DEMO_CFG), *tiny_opts(tiny_data, plain)]) == 0
    a = load_file(out_dir(full) / "final_state.pth")
    p = load_file(out_dir(plain) / "final_state.pth")
    assert any(not torch.equal(a[k], p[k]) for k in a)  # the mixed samples were trained on

    # killed after epoch 1 and resumed: the same weights as the run straight through
    cut = tmp_path / "cut"
    real = interrupt_in_epoch_two(monkeypatch)
    assert train_tool.main(["--cfg", str(DEMO_CFG), *tiny_opts(tiny_data, cut, *mix)]) == 130
    monkeypatch.setattr(training, "train_one_epoch", real)
    opts = tiny_opts(tiny_data, cut, *mix, "TRAIN.RESUME", "True")
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 0
    b = load_file(out_dir(cut) / "final_state.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mix_ratio_without_a_list_is_one_line(tmp_path, capsys):
    argv = ["--cfg", str(DEMO_CFG), "DATASET.MIX_RATIO", "0.5", "OUTPUT_DIR", str(tmp_path)]
    assert train_tool.main(argv) == 2
    assert "DATASET.MIX_SET is empty" in capsys.readouterr().err


def test_amp_keys_are_checked_before_the_first_epoch(tiny_data, tmp_path, monkeypatch, capsys):
    def no_epoch(*args, **kwargs):
        raise AssertionError("an epoch ran before the AMP keys were checked")

    monkeypatch.setattr(training, "train_one_epoch", no_epoch)
    for key, value, says in (("TEST.AMP", "fp16", "TEST.AMP fp16 needs a CUDA device"),
                             ("TRAIN.AMP", "bf61", "TRAIN.AMP is 'bf61'")):
        opts = tiny_opts(tiny_data, tmp_path / key, key, value)
        assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 2
        errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and says in errors[0]


def test_srun_tasks_without_a_launcher_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "2")
    argv = ["--cfg", str(DEMO_CFG), "OUTPUT_DIR", str(tmp_path / "out")]
    assert train_tool.main(argv) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "SLURM started 4 tasks without a launcher" in errors[0]
    assert not (tmp_path / "out").exists()  # nothing written
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")  # one task (srun -n 1, sbatch): allowed
    from lib.utils.distributed import check_not_bare_slurm

    check_not_bare_slurm()


def test_a_second_training_into_a_busy_output_dir_is_refused(tiny_data, tmp_path, capsys):
    import subprocess
    import sys
    import time

    opts = tiny_opts(tiny_data, tmp_path, "TRAIN.END_EPOCH", "1")
    out_dir = tmp_path / "output" / "daodixian_seg" / DEMO_CFG.stem
    out_dir.mkdir(parents=True)
    holder = subprocess.Popen(  # a first training, as far as the folder is concerned
        [sys.executable, "-c", "import time; from lib.utils.lock import output_lock\n"
         f"with output_lock({str(out_dir)!r}, 'training'):\n    time.sleep(120)"],
        cwd=str(DEMO_CFG.parents[2]))
    try:
        for _ in range(100):
            if (out_dir / ".lock").is_file() and (out_dir / ".lock").read_text():
                break
            time.sleep(0.1)
        capsys.readouterr()
        assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 2
        errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "another training is writing here (training, pid" in errors[0]
        assert not (out_dir / "checkpoint.pth.tar").exists()  # nothing of the first replaced
    finally:
        holder.kill()
        holder.wait()
    # the lock went with the killed process: the folder is free again
    assert train_tool.main(["--cfg", str(DEMO_CFG), *opts]) == 0
    assert (out_dir / "final_state.pth").is_file()

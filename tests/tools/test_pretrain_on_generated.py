"""tools/pretrain_on_generated.py end to end: generate, convert, train, write the weights that
MODEL.PRETRAINED then loads; a rerun keeps what is done; other settings in the same folder are refused."""

from __future__ import annotations

import pytest
import torch

from lib.config import get_config
from lib.models import WeightsError, get_seg_model
from tests.tools.conftest import tiny_opts
from tools import pretrain_on_generated as pretrain

CFG = str(pretrain.REPO / pretrain.CFG)


def _training_opts(tmp_path):
    """The tiny run's overrides, less the folders and epochs the tool sets itself."""
    opts = tiny_opts(tmp_path, tmp_path)
    pairs = list(zip(opts[::2], opts[1::2]))
    own = {"DATASET.ROOT", "OUTPUT_DIR", "LOG_DIR", "TRAIN.END_EPOCH", "TRAIN.EVAL_INTERVAL"}
    return [x for k, v in pairs if k not in own for x in (k, v)]


def test_pretrains_once_and_the_recipe_loads_the_weights(tmp_path, capsys):
    data, out = tmp_path / "gen", tmp_path / "pre" / "w.pth"
    argv = ["--data", str(data), "--out", str(out), "--num", "10", "--width", "128",
            "--height", "96", "--epochs", "1", *_training_opts(tmp_path)]
    assert pretrain.main(argv) == 0
    printed = capsys.readouterr().out
    assert "1/3 generate 10 canopy photos" in printed and "3/3 train" in printed
    assert f"MODEL.PRETRAINED {out}" in printed
    assert len(list((data / "raw" / "images").glob("*.jpg"))) == 10
    assert len((data / "list" / "daodixian_seg" / "val.lst").read_text().splitlines()) == 10

    # the recipe's network takes the weights through MODEL.PRETRAINED, every tensor of it
    cfg = get_config(CFG, ["MODEL.PRETRAINED", str(out)])
    model = get_seg_model(cfg)
    saved = torch.load(out, map_location="cpu", weights_only=True)  # the official layout
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[f"model.{key}"]), key

    assert pretrain.main(argv) == 0  # done: nothing runs again
    assert "is already there" in capsys.readouterr().out

    out.unlink()  # the weights lost, the photos and training kept: neither runs again
    before = (data / "raw" / "annotations.json").stat().st_mtime_ns
    assert pretrain.main(argv) == 0
    printed = capsys.readouterr().out
    assert "10 photos already generated" in printed and "1/3 generate" not in printed
    assert "2/3 convert" not in printed
    assert (data / "raw" / "annotations.json").stat().st_mtime_ns == before
    again = torch.load(out, map_location="cpu", weights_only=True)
    assert all(torch.equal(again[k], saved[k]) for k in saved)  # resumed at its end, not retrained

    # other generator settings in the same folder: refused, nothing overwritten
    other = argv[:]
    other[other.index("--out") + 1] = str(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="holds photos generated with .*another --data"):
        pretrain.main([*other, "--seed", "3"])
    assert (data / "raw" / "annotations.json").stat().st_mtime_ns == before


def test_too_few_photos_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="--num must be >= 10"):
        pretrain.main(["--data", str(tmp_path / "g"), "--out", str(tmp_path / "w.pth"),
                       "--num", "4"])


def test_training_from_a_start_not_made_yet_says_how_to_make_it(tmp_path):
    missing = tmp_path / "seg_hrnet_ocr_w18_small_v1_real_generated_canopy.pth"
    with pytest.raises(WeightsError, match="weights file not found .*tools/pretrain_on_generated"):
        get_seg_model(get_config(CFG, ["MODEL.PRETRAINED", str(missing)]))


def test_a_failed_training_names_its_command_and_keeps_the_photos(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pretrain, "_DONE_STAGES", [])
    data = tmp_path / "gen"
    argv = ["--data", str(data), "--out", str(tmp_path / "w.pth"), "--num", "10", "--width",
            "96", "--height", "64", "--epochs", "1", "TRAIN.NO_SUCH_KEY", "1"]
    code = pretrain.cli.run(lambda: pretrain.main(argv),
                            partly_done=lambda: bool(pretrain._DONE_STAGES))
    assert code == pretrain.cli.PARTLY  # photos and labels made: a rerun goes on from them
    err = capsys.readouterr().err
    assert "TRAIN.NO_SUCH_KEY" in err  # train.py's own line
    assert "error: stage '3/3 train" in err and "its command: python tools/train.py" in err
    assert (data / "raw" / "settings.json").is_file() and not (tmp_path / "w.pth").exists()


def test_default_generation_is_the_documented_generated_only_command(tmp_path, monkeypatch):
    """The default start generates the photos of docs/real_photos.md's generated-only command
    (2560 canopy photos at 540x360): the scores documented for that command are the tool's."""
    calls = []

    class Stop(Exception):
        pass

    def first_stage(title, args):
        calls.append(args)
        raise Stop

    monkeypatch.setattr(pretrain, "stage", first_stage)
    with pytest.raises(Stop):
        pretrain.main(["--data", str(tmp_path / "g"), "--out", str(tmp_path / "w.pth")])
    generate = calls[0]
    value = {k: generate[generate.index(k) + 1] for k in ("--num", "--width", "--height", "--style")}
    assert value == {"--num": "2560", "--width": "540", "--height": "360", "--style": "canopy"}
    doc = (pretrain.REPO / "docs" / "real_photos.md").read_text(encoding="utf-8")
    documented = next(line for line in doc.splitlines()
                      if line.startswith("python tools_jss/make_synthetic_daodixian.py")
                      and "--style canopy" in line)
    assert f"--num {value['--num']} " in documented and "--width 540 --height 360" in documented

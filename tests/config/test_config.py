"""The configuration: defaults, official yaml files, overrides and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lib.config import ConfigError, config_name, get_config

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "experiments").rglob("*.yaml"))


def test_defaults_are_frozen_and_official():
    cfg = get_config()
    assert cfg.is_frozen()
    assert cfg.MODEL.OCR.MID_CHANNELS == 512 and cfg.MODEL.OCR.KEY_CHANNELS == 256
    assert cfg.TRAIN.IMAGE_SIZE == [1024, 512] and cfg.TEST.OUTPUT_INDEX == -1
    with pytest.raises(AttributeError):
        cfg.TRAIN.LR = 1.0


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_file_loads(path):
    cfg = get_config(path)
    assert cfg.MODEL.NAME in ("seg_hrnet", "seg_hrnet_ocr")
    assert len(cfg.MODEL.EXTRA.STAGE4.NUM_CHANNELS) == 4


def test_official_typo_num_ranches_is_accepted():
    cfg = get_config(REPO / "experiments/daodixian_seg/seg_hrnet_ocr_w48_epoch48_1209.yaml")
    assert cfg.MODEL.EXTRA.STAGE1.NUM_RANCHES == 1
    assert cfg.GPUS == (0, 1)


def test_power_line_experiment_values():
    cfg = get_config(REPO / "experiments/daodixian_seg/seg_hrnet_ocr_w48_epoch48_1209.yaml")
    assert cfg.DATASET.NUM_CLASSES == 2 and cfg.DATASET.DATASET == "daodixian_seg"
    assert cfg.TRAIN.IMAGE_SIZE == [1024, 512] and cfg.TRAIN.BASE_SIZE == 2048
    assert cfg.TRAIN.BATCH_SIZE_PER_GPU == 2 and cfg.TRAIN.END_EPOCH == 148
    assert cfg.TRAIN.LR == 0.01 and cfg.TRAIN.WD == 0.0005 and cfg.TRAIN.IGNORE_LABEL == 255
    assert cfg.LOSS.BALANCE_WEIGHTS == [0.4, 1.0]
    assert cfg.TEST.SCALE_LIST == [0.5, 0.75, 1.0]
    assert cfg.MODEL.PRETRAINED == "pretrained_models/hrnetv2_w48_imagenet_pretrained.pth"
    assert cfg.MODEL.ALIGN_CORNERS is False  # thin wires: no drift of the upsampled output


def test_command_line_overrides_are_typed():
    cfg = get_config(None, ["TEST.SCALE_LIST", "0.5,0.75,1.0", "TEST.FLIP_TEST", "True",
                            "TEST.MODEL_FILE", "x.pth", "TRAIN.LR", "1", "TRAIN.LR_STEP", "[1, 2]"])
    assert cfg.TEST.SCALE_LIST == [0.5, 0.75, 1.0]
    assert cfg.TEST.FLIP_TEST is True
    assert cfg.TEST.MODEL_FILE == "x.pth"
    assert cfg.TRAIN.LR == 1.0 and isinstance(cfg.TRAIN.LR, float)
    assert get_config(None, ["TEST.SCALE_LIST", "1.0"]).TEST.SCALE_LIST == [1.0]


def test_yaml_scientific_notation_is_a_float(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("TRAIN:\n  LR: 1e-2\n")
    assert get_config(f).TRAIN.LR == pytest.approx(0.01)


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text("TRAIN:\n  BATCH_SIZE_PER_GPUS: 2\n")
    with pytest.raises(ConfigError) as err:
        get_config(f)
    msg = str(err.value)
    assert "typo.yaml" in msg and "TRAIN.BATCH_SIZE_PER_GPUS" in msg
    assert "did you mean TRAIN.BATCH_SIZE_PER_GPU" in msg and "\n" not in msg


def test_wrong_type_in_file_names_key_and_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("TRAIN:\n  FLIP: maybe\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: config key TRAIN.FLIP expects bool"):
        get_config(f)


def test_unknown_override_and_odd_override_fail_clearly():
    with pytest.raises(ConfigError, match="command line: unknown config key TEST.MODELFILE"):
        get_config(None, ["TEST.MODELFILE", "x.pth"])
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        get_config(None, ["TEST.MODEL_FILE"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        get_config(tmp_path / "nope.yaml")
    f = tmp_path / "broken.yaml"
    f.write_text("TRAIN:\n  LR: [0.1\n")
    with pytest.raises(ConfigError, match="broken.yaml.*not valid YAML"):
        get_config(f)


def test_config_name():
    assert config_name("experiments/a/seg_hrnet_ocr_w48_epoch48_1209.yaml") == "seg_hrnet_ocr_w48_epoch48_1209"


@pytest.mark.parametrize(
    "opts, message",
    [
        (["TRAIN.IMAGE_SIZE", "128"], "TRAIN.IMAGE_SIZE is [128] "),
        (["TEST.IMAGE_SIZE", "[0, 512]"], "two positive integers"),
        (["TRAIN.LR", "0.0"], "TRAIN.LR is 0.0 "),
        (["TRAIN.BATCH_SIZE_PER_GPU", "0"], "TRAIN.BATCH_SIZE_PER_GPU is 0 "),
        (["TEST.WIRE_THRESHOLD", "1.5"], "TEST.WIRE_THRESHOLD is 1.5 "),
        (["TEST.SCALE_LIST", "[]"], "TEST.SCALE_LIST is []"),
    ],
)
def test_unusable_values_are_one_config_error(opts, message):
    cfg_file = (
        Path(__file__).resolve().parents[2]
        / "experiments"
        / "daodixian_seg"
        / "seg_hrnet_ocr_w18_small_v1_demo.yaml"
    )
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        get_config(cfg_file, opts)
    assert "\n" not in str(err.value) and "demo.yaml or the command line" in str(err.value)

"""The configuration: defaults, official yaml files, overrides and clear errors."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

import lib.config
from lib.config import (
    ConfigError,
    config_name,
    get_config,
    wire_classes,
    wire_threshold,
    wire_tolerance,
)

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
        (["WIRE.THRESHOLD", "1.5"], "WIRE.THRESHOLD is '1.5'"),
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


# --- the WIRE section and the old names of its keys ---

DEMO = REPO / "experiments" / "daodixian_seg" / "seg_hrnet_ocr_w18_small_v1_demo.yaml"
OLD_KEYS = ("TEST.WIRE_CLASSES", "TEST.WIRE_TOLERANCE", "TEST.WIRE_THRESHOLD",
            "DATASET.LABEL_DILATE")


@pytest.fixture
def notices(monkeypatch, caplog):
    """The deprecation lines logged from here on, with the once-per-process memory cleared."""
    monkeypatch.setattr(lib.config, "_DEPRECATION_LOGGED", set())
    monkeypatch.delenv("RANK", raising=False)
    caplog.set_level(logging.WARNING, logger="lib.config")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]

    return lines


def _wire(cfg) -> tuple:
    """The effective wire settings every reader sees."""
    return wire_classes(cfg), wire_tolerance(cfg), wire_threshold(cfg), cfg.WIRE.LABEL_DILATE


# what each experiment meant before the WIRE section (TEST.WIRE_*, DATASET.LABEL_DILATE):
# power lines score class 1 at 0.0075 of the diagonal, Cityscapes has no wire class
BEFORE = {
    "seg_hrnet_ocr_w18_small_v1_demo.yaml": ([1], 0.0075, "auto", 0),
    "seg_hrnet_ocr_w18_small_v1_real.yaml": ([1], 0.0075, "auto", 1),
    "seg_hrnet_ocr_w48_epoch48_1209.yaml": ([1], 0.0075, "auto", 0),
}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_keeps_its_wire_settings(path, notices):
    cfg = get_config(path)
    assert _wire(cfg) == BEFORE.get(path.name, ([], 0.0075, "auto", 0))
    assert notices() == []  # none of our files uses an old name


def test_old_keys_in_a_yaml_file_set_the_new_ones_with_one_notice_each(tmp_path, notices):
    f = tmp_path / "old.yaml"
    f.write_text("DATASET:\n  DATASET: daodixian_seg\n  NUM_CLASSES: 2\n  LABEL_DILATE: 1\n"
                 "TEST:\n  WIRE_CLASSES: [1]\n  WIRE_TOLERANCE: 3\n  WIRE_THRESHOLD: -1\n")
    cfg = get_config(f)
    assert _wire(cfg) == ([1], 3.0, "argmax", 1)
    assert cfg.WIRE.TOLERANCE_PX == 3.0 and cfg.WIRE.TOLERANCE_FRACTION == 0.0
    assert "WIRE_THRESHOLD" not in cfg.TEST and "LABEL_DILATE" not in cfg.DATASET
    lines = notices()
    assert len(lines) == 4 and all("\n" not in line and "old.yaml" in line for line in lines)
    for old, new in zip(OLD_KEYS, ("WIRE.CLASSES [1]", "WIRE.TOLERANCE_PX 3.0",
                                   "WIRE.THRESHOLD argmax", "WIRE.LABEL_DILATE 1")):
        assert sum(old in line and new in line for line in lines) == 1, (old, lines)
    get_config(f)  # once per key and process
    assert len(notices()) == 4


def test_old_keys_on_the_command_line_convert_their_values(notices):
    cfg = get_config(DEMO, ["TEST.WIRE_THRESHOLD", "0", "TEST.WIRE_TOLERANCE", "0.01"])
    assert _wire(cfg)[1:3] == (0.01, "auto")
    assert cfg.WIRE.TOLERANCE_PX == 0.0 and cfg.WIRE.TOLERANCE_FRACTION == 0.01
    assert get_config(DEMO, ["TEST.WIRE_THRESHOLD", "0.35"]).WIRE.THRESHOLD == "0.35"
    assert get_config(DEMO, ["TEST.WIRE_THRESHOLD", "-1"]).WIRE.THRESHOLD == "argmax"
    assert get_config(DEMO, ["DATASET.LABEL_DILATE", "2"]).WIRE.LABEL_DILATE == 2
    lines = notices()
    assert len(lines) == 3 and all(line.startswith("command line: config key TEST.WIRE_")
                                   or "DATASET.LABEL_DILATE" in line for line in lines)


def test_an_old_and_a_new_key_that_disagree_are_one_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        get_config(DEMO, ["TEST.WIRE_THRESHOLD", "-1", "WIRE.THRESHOLD", "auto"])
    msg = str(err.value)
    assert msg.startswith("command line: TEST.WIRE_THRESHOLD") and "WIRE.THRESHOLD 'auto'" in msg
    assert "\n" not in msg
    f = tmp_path / "both.yaml"
    f.write_text("TEST:\n  WIRE_TOLERANCE: 3\nWIRE:\n  TOLERANCE_PX: 2\n")
    with pytest.raises(ConfigError, match=r"both.yaml: TEST.WIRE_TOLERANCE .* WIRE.TOLERANCE_PX"):
        get_config(f)
    # the same meaning under both names is no conflict
    same = get_config(DEMO, ["DATASET.LABEL_DILATE", "1", "WIRE.LABEL_DILATE", "1"])
    assert same.WIRE.LABEL_DILATE == 1


def test_the_command_line_overrides_an_old_key_of_the_file(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text(DEMO.read_text() + "\n  WIRE_THRESHOLD: -1\n")  # appended to the TEST section
    assert get_config(f).WIRE.THRESHOLD == "argmax"
    assert get_config(f, ["WIRE.THRESHOLD", "0.4"]).WIRE.THRESHOLD == "0.4"


@pytest.mark.parametrize(
    "value, expected",
    [("auto", "auto"), ("argmax", "argmax"), ("0.35", 0.35), (".5", 0.5), ("1.5", None),
     ("abc", None), ("0", None), ("-1", None)],
)
def test_wire_threshold_is_auto_argmax_or_a_number_in_0_1(value, expected):
    if expected is None:
        with pytest.raises(ConfigError, match=r"^WIRE.THRESHOLD is .*auto .*argmax .*\(0, 1\)"):
            get_config(DEMO, ["WIRE.THRESHOLD", value])
        return
    cfg = get_config(DEMO, ["WIRE.THRESHOLD", value])
    assert wire_threshold(cfg) == expected


def test_wire_threshold_from_a_yaml_number(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text(DEMO.read_text() + "WIRE:\n  THRESHOLD: 0.35\n")
    cfg = get_config(f)
    assert cfg.WIRE.THRESHOLD == "0.35" and wire_threshold(cfg) == 0.35


def test_tolerance_in_pixels_or_a_fraction_of_the_diagonal_never_both(tmp_path):
    px = get_config(DEMO, ["WIRE.TOLERANCE_PX", "3"])
    assert (px.WIRE.TOLERANCE_PX, px.WIRE.TOLERANCE_FRACTION, wire_tolerance(px)) == (3.0, 0.0, 3.0)
    fraction = get_config(DEMO, ["WIRE.TOLERANCE_FRACTION", "0.01"])
    assert wire_tolerance(fraction) == 0.01 and fraction.WIRE.TOLERANCE_PX == 0.0
    with pytest.raises(ConfigError, match="command line: WIRE.TOLERANCE_PX 3.0 and WIRE.TOLERANCE"
                                          "_FRACTION 0.01 are both set"):
        get_config(DEMO, ["WIRE.TOLERANCE_PX", "3", "WIRE.TOLERANCE_FRACTION", "0.01"])
    f = tmp_path / "px.yaml"
    f.write_text(DEMO.read_text() + "WIRE:\n  TOLERANCE_PX: 3\n")
    assert wire_tolerance(get_config(f, ["WIRE.TOLERANCE_FRACTION", "0.01"])) == 0.01
    for opts, message in [(["WIRE.TOLERANCE_PX", "0.5"], "WIRE.TOLERANCE_PX is 0.5"),
                          (["WIRE.TOLERANCE_FRACTION", "1.0"], "WIRE.TOLERANCE_FRACTION is 1.0")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            get_config(DEMO, opts)


def test_wire_classes_are_the_datasets_unless_given():
    assert wire_classes(get_config(DEMO)) == [1]
    assert wire_classes(get_config()) == []  # Cityscapes: no wire class
    assert wire_classes(get_config(None, ["WIRE.CLASSES", "[11, 12]"])) == [11, 12]
    with pytest.raises(ConfigError, match=r"WIRE.CLASSES is \[2\] .*\[0, 2\)"):
        get_config(DEMO, ["WIRE.CLASSES", "2"])


@pytest.mark.parametrize(
    "opts",
    [["LOSS.DICE", "0.5"], ["LOSS.SKELETON_RECALL", "1"], ["WIRE.LABEL_DILATE", "1"],
     ["WIRE.THRESHOLD", "0.4"], ["TRAIN.AUG_PASTE_WIRES", "0.5"], ["TEST.SCALE_FUSE", "wire_max"],
     ["TEST.SAVE_PROB", "True"], ["TRAIN.LABEL_FILL", "2"]],
)
def test_wire_settings_need_a_wire_class(opts):
    with pytest.raises(ConfigError, match=rf"^{re.escape(opts[0])}.* needs a wire class, but "
                                          r"DATASET.DATASET cityscapes has none .*WIRE.CLASSES"):
        get_config(None, opts)
    get_config(None, [*opts, "WIRE.CLASSES", "1"])

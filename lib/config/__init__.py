"""Configuration: yacs defaults + an experiment yaml + command-line overrides.

    cfg = get_config("experiments/daodixian_seg/seg_hrnet_ocr_w48_epoch48_1209.yaml",
                     ["TRAIN.LR", "0.02"])

An unknown key, a wrong type or an unreadable file raises `ConfigError` with a one-line
message naming the key and the file. The old names of the WIRE keys (`RENAMED_KEYS`) are still
read, converted and logged once per process.
"""

from __future__ import annotations

import ast
import difflib
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from yacs.config import CfgNode

from lib.config.defaults import defaults
from lib.config.paths import ExperimentPaths
from lib.utils.amp import AMP_NAMES

FUSE_MODES = ("sum", "wire_max")  # TEST.SCALE_FUSE: lib.core.inference.ScaleFusion
# The wire classes of a dataset whose WIRE.CLASSES is empty: the power-line dataset's wire is
# class 1 (lib.datasets.daodixian); Cityscapes and the generic list dataset have none.
DATASET_WIRE_CLASSES = {"daodixian_seg": (1,)}
WIRE_THRESHOLD_WORDS = ("auto", "argmax")  # WIRE.THRESHOLD, besides a number in (0, 1)
# String keys that also take a number, kept as its text (WIRE.THRESHOLD 0.35).
_NUMBER_AS_TEXT = {"WIRE.THRESHOLD"}

__all__ = [
    "ConfigError",
    "ExperimentPaths",
    "get_config",
    "config_name",
    "wire_classes",
    "wire_threshold",
    "wire_tolerance",
    "CfgNode",
]

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key and the source."""


def _parse_text(value: Any) -> Any:
    """Turn command-line text into a Python value the way yacs does ('0.5,1' -> (0.5, 1))."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """Check `value` against the default's type; accept ints for floats and tuples for lists."""
    value = _parse_text(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        if value is None:
            return ""
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and key in _NUMBER_AS_TEXT:
            return repr(float(value))
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return type(default)(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return type(default)([value])  # "TEST.SCALE_LIST 1.0" means [1.0]
    else:
        return value
    raise ConfigError(
        f"{source}: config key {key} expects {type(default).__name__} "
        f"(default {default!r}), got {type(value).__name__} {value!r}"
    )


def _old_tolerance(value: float) -> dict[str, float]:
    # the old key changed unit at 1: pixels from 1, a fraction of the image diagonal below
    if value >= 1:
        return {"WIRE.TOLERANCE_PX": value, "WIRE.TOLERANCE_FRACTION": 0.0}
    return {"WIRE.TOLERANCE_PX": 0.0, "WIRE.TOLERANCE_FRACTION": value}


def _old_threshold(value: float) -> dict[str, str]:
    # the old key: 0 the picked file or argmax, below 0 argmax, else the threshold itself
    text = "auto" if value == 0 else "argmax" if value < 0 else repr(value)
    return {"WIRE.THRESHOLD": text}


# Old names still read from yaml files and the command line: old key -> (its old default, which
# gives its type, and its value -> the new keys' values).
RENAMED_KEYS: dict[str, tuple[Any, Callable[[Any], dict[str, Any]]]] = {
    "TEST.WIRE_CLASSES": ([], lambda v: {"WIRE.CLASSES": list(v)}),
    "TEST.WIRE_TOLERANCE": (0.0075, _old_tolerance),
    "TEST.WIRE_THRESHOLD": (0.0, _old_threshold),
    "DATASET.LABEL_DILATE": (0, lambda v: {"WIRE.LABEL_DILATE": v}),
}
_DEPRECATION_LOGGED: set[str] = set()  # old keys whose notice this process has logged


def _given_old_key(key: str, value: Any, source: str, given: dict) -> None:
    """Record what an old key's value means in the new keys (applied by _settle_given)."""
    default, convert = RENAMED_KEYS[key]
    for new_key, new_value in convert(_coerce(key, value, default, source)).items():
        given.setdefault(new_key, {})[key] = new_value


def _settle_given(cfg: CfgNode, given: dict, source: str) -> None:
    """After one source: old keys onto their new keys (an old and a new key that disagree is an
    error); a non-zero WIRE tolerance given in one unit sets the other unit's to 0."""
    read_as: dict[str, list[str]] = {}  # old key -> "NEW.KEY value", for its notice
    for new_key, by_name in given.items():
        old = {name: value for name, value in by_name.items() if name != new_key}
        for old_key, value in old.items():
            if new_key in by_name and value != by_name[new_key]:
                raise ConfigError(
                    f"{source}: {old_key} (old name, read as {new_key} {value!r}) and "
                    f"{new_key} {by_name[new_key]!r} disagree; give {new_key} only"
                )
            section, leaf = new_key.split(".")
            cfg[section][leaf] = value
            read_as.setdefault(old_key, []).append(f"{new_key} {value}")
    for old_key, news in read_as.items():
        _log_deprecated(old_key, f"{source}: config key {old_key} is deprecated, read as "
                                 f"{', '.join(news)} (docs/configs.md, the WIRE section)")
    px, fraction = "WIRE.TOLERANCE_PX" in given, "WIRE.TOLERANCE_FRACTION" in given
    if px and fraction and cfg.WIRE.TOLERANCE_PX and cfg.WIRE.TOLERANCE_FRACTION:
        raise ConfigError(
            f"{source}: WIRE.TOLERANCE_PX {cfg.WIRE.TOLERANCE_PX} and WIRE.TOLERANCE_FRACTION "
            f"{cfg.WIRE.TOLERANCE_FRACTION} are both set; give one of them (the other 0)"
        )
    if px and not fraction and cfg.WIRE.TOLERANCE_PX:
        cfg.WIRE.TOLERANCE_FRACTION = 0.0
    if fraction and not px and cfg.WIRE.TOLERANCE_FRACTION:
        cfg.WIRE.TOLERANCE_PX = 0.0


def _log_deprecated(old_key: str, line: str) -> None:
    """`line` once per old key and process (on rank 0 only, like every log line of a run)."""
    if old_key in _DEPRECATION_LOGGED or os.environ.get("RANK", "0") != "0":
        return
    _DEPRECATION_LOGGED.add(old_key)
    logger.warning("%s", line)


def _unknown_key(key: str, node: CfgNode, prefix: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(node.keys()), n=1)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return ConfigError(f"{source}: unknown config key {prefix}{key}{hint}")


def _merge_dict(node: CfgNode, data: dict, prefix: str, source: str, given: dict) -> None:
    """Merge a plain dict into `node`, checking every key and type on the way; `given` records
    the keys set (old names under their new keys)."""
    for key, value in data.items():
        full = f"{prefix}{key}"
        if full in RENAMED_KEYS:
            _given_old_key(full, value, source, given)
            continue
        if key not in node:
            if not node.is_new_allowed():
                raise _unknown_key(key, node, prefix, source)
            node[key] = CfgNode(value, new_allowed=True) if isinstance(value, dict) else value
            continue
        current = node[key]
        if isinstance(current, CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: config key {full} must be a mapping, got {value!r}")
            _merge_dict(current, value, full + ".", source, given)
        elif node.is_new_allowed():
            node[key] = value
        else:
            node[key] = _coerce(full, value, current, source)
            given.setdefault(full, {})[full] = node[key]


def _merge_opts(cfg: CfgNode, opts: Sequence[str], given: dict) -> None:
    if len(opts) % 2:
        raise ConfigError(f"command line: overrides come in KEY VALUE pairs, got {list(opts)!r}")
    for key, value in zip(opts[0::2], opts[1::2]):
        if key in RENAMED_KEYS:
            _given_old_key(key, value, "command line", given)
            continue
        *parents, leaf = key.split(".")
        node, prefix = cfg, ""
        for part in parents:
            if part not in node or not isinstance(node[part], CfgNode):
                raise _unknown_key(part, node, prefix, "command line")
            node, prefix = node[part], prefix + part + "."
        if leaf not in node:
            if not node.is_new_allowed():
                raise _unknown_key(leaf, node, prefix, "command line")
            node[leaf] = _parse_text(value)
        elif isinstance(node[leaf], CfgNode):
            raise ConfigError(f"command line: config key {key} is a section, not a value")
        else:
            node[leaf] = _coerce(key, value, node[leaf], "command line")
            given.setdefault(key, {})[key] = node[leaf]


def get_config(cfg_file: str | Path | None = None, opts: Sequence[str] | None = None) -> CfgNode:
    """Defaults, then `cfg_file` (yaml, official schema), then `opts` ([KEY, VALUE, ...]); frozen."""
    cfg = defaults()
    if cfg_file:
        path = Path(cfg_file)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{where} is not valid YAML ({err})".replace("\n", " ")) from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of config keys")
        given: dict[str, dict[str, Any]] = {}  # key -> {name it was given under: value}
        _merge_dict(cfg, data, "", str(path), given)
        _settle_given(cfg, given, str(path))
    given = {}  # the command line is settled on its own: it overrides the file, old names too
    _merge_opts(cfg, list(opts or []), given)
    _settle_given(cfg, given, "command line")
    _check_values(cfg, str(cfg_file) if cfg_file else "defaults")
    cfg.freeze()
    return cfg


def _check_values(cfg: CfgNode, source: str) -> None:
    """Values of the right type that no run can use: one ConfigError line instead of an
    IndexError or ZeroDivisionError deep inside the run."""
    where = f"({source} or the command line)"
    for key in ("TRAIN.IMAGE_SIZE", "TEST.IMAGE_SIZE", "TEST.TILE_SIZE"):
        section, leaf = key.split(".")
        value = list(cfg[section][leaf])
        if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
            raise ConfigError(
                f"{key} is {value} {where}; expected [width, height], two positive integers"
            )
    positive = {
        "TRAIN.LR": cfg.TRAIN.LR,
        "TRAIN.BASE_SIZE": cfg.TRAIN.BASE_SIZE,
        "TRAIN.BATCH_SIZE_PER_GPU": cfg.TRAIN.BATCH_SIZE_PER_GPU,
        "TEST.BATCH_SIZE_PER_GPU": cfg.TEST.BATCH_SIZE_PER_GPU,
        "TEST.BASE_SIZE": cfg.TEST.BASE_SIZE,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key} is {value} {where}; it must be greater than 0")
    for key in ("LOSS.DICE", "LOSS.SKELETON_RECALL"):
        section, leaf = key.split(".")
        if not 0 <= cfg[section][leaf] < float("inf"):
            raise ConfigError(f"{key} is {cfg[section][leaf]} {where}; a weight: 0 (off) or more")
    if cfg.TRAIN.EXTRA_EPOCH > 0 and not cfg.TRAIN.EXTRA_LR > 0:
        raise ConfigError(f"TRAIN.EXTRA_LR is {cfg.TRAIN.EXTRA_LR} {where}; it must be greater than 0")
    if cfg.TRAIN.END_EPOCH < 0 or cfg.TRAIN.EXTRA_EPOCH < 0:
        raise ConfigError(f"TRAIN.END_EPOCH / EXTRA_EPOCH must be 0 or more {where}")
    if not 0 <= cfg.TRAIN.TIME_BUDGET < float("inf"):
        raise ConfigError(
            f"TRAIN.TIME_BUDGET is {cfg.TRAIN.TIME_BUDGET} {where}; give minutes > 0, or 0 (off)"
        )
    if cfg.TRAIN.TIME_BUDGET > 0 and cfg.TRAIN.EXTRA_EPOCH > 0:
        raise ConfigError(
            f"TRAIN.TIME_BUDGET plans the main phase only, but TRAIN.EXTRA_EPOCH is "
            f"{cfg.TRAIN.EXTRA_EPOCH} {where}; set one of them to 0"
        )
    if not 0 <= cfg.DATASET.MIX_RATIO < float("inf"):
        raise ConfigError(f"DATASET.MIX_RATIO is {cfg.DATASET.MIX_RATIO} {where}; 0 (off) or more")
    if cfg.DATASET.MIX_RATIO > 0 and not cfg.DATASET.MIX_SET:
        raise ConfigError(
            f"DATASET.MIX_RATIO is {cfg.DATASET.MIX_RATIO} but DATASET.MIX_SET is empty {where}; "
            "name the list to mix in"
        )
    window = list(cfg.TEST.VAL_WINDOW)
    if len(window) != 2 or any(v < 0 for v in window) or (min(window) == 0 < max(window)):
        raise ConfigError(f"TEST.VAL_WINDOW is {window} {where}; give [width, height] in pixels, "
                          "or [0, 0] to validate whole images")
    if not 0 < cfg.TEST.ZOOM < float("inf"):
        raise ConfigError(f"TEST.ZOOM is {cfg.TEST.ZOOM} {where}; give a zoom > 0 (1: the photo as it is)")
    if cfg.TRAIN.LABEL_FILL < 0:
        raise ConfigError(f"TRAIN.LABEL_FILL is {cfg.TRAIN.LABEL_FILL} {where}; 0 (off) or more pixels")
    if not 0 <= cfg.TRAIN.AUG_ZOOM <= 1:
        raise ConfigError(f"TRAIN.AUG_ZOOM is {cfg.TRAIN.AUG_ZOOM} {where}; a probability in [0, 1]")
    if not 1 <= cfg.TRAIN.AUG_ZOOM_MAX < float("inf"):
        raise ConfigError(f"TRAIN.AUG_ZOOM_MAX is {cfg.TRAIN.AUG_ZOOM_MAX} {where}; a zoom of 1 or more")
    for key in ("TRAIN.AMP", "TEST.AMP"):
        section, leaf = key.split(".")
        if cfg[section][leaf] not in AMP_NAMES:
            raise ConfigError(
                f"{key} is {cfg[section][leaf]!r} {where}; use \"\" (fp32), bf16 or fp16 (CUDA only)"
            )
    if not list(cfg.TEST.SCALE_LIST) or not all(v > 0 for v in cfg.TEST.SCALE_LIST):
        raise ConfigError(f"TEST.SCALE_LIST is {list(cfg.TEST.SCALE_LIST)} {where}; give scales > 0")
    if cfg.TEST.SCALE_FUSE not in FUSE_MODES:
        raise ConfigError(
            f"TEST.SCALE_FUSE is {cfg.TEST.SCALE_FUSE!r} {where}; use "
            + " or ".join(FUSE_MODES)
        )
    _check_wire(cfg, where)


def _check_wire(cfg: CfgNode, where: str) -> None:
    """The WIRE keys, and the keys that need a wire class (_check_values' part for wires)."""
    given = list(cfg.WIRE.CLASSES)
    n = cfg.DATASET.NUM_CLASSES
    if len(set(given)) < len(given) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c < n for c in given
    ):
        raise ConfigError(
            f"WIRE.CLASSES is {given} {where}; give distinct class ids in [0, {n}) "
            "(DATASET.NUM_CLASSES), or [] for the dataset's own"
        )
    px, fraction = cfg.WIRE.TOLERANCE_PX, cfg.WIRE.TOLERANCE_FRACTION
    if not (px == 0 or 1 <= px < math.inf):
        raise ConfigError(f"WIRE.TOLERANCE_PX is {px} {where}; give pixels, 1 or more (0: off)")
    if not 0 <= fraction < 1:
        raise ConfigError(
            f"WIRE.TOLERANCE_FRACTION is {fraction} {where}; give a fraction of the image "
            "diagonal in [0, 1) (0: off)"
        )
    if px and fraction:
        raise ConfigError(
            f"WIRE.TOLERANCE_PX {px} and WIRE.TOLERANCE_FRACTION {fraction} are both set {where}; "
            "give one of them (the other 0)"
        )
    if cfg.WIRE.LABEL_DILATE < 0:
        raise ConfigError(
            f"WIRE.LABEL_DILATE is {cfg.WIRE.LABEL_DILATE} {where}; 0 (off) or more pixels"
        )
    try:
        threshold = wire_threshold(cfg)
    except ConfigError as err:
        raise ConfigError(f"{err} {where}") from None
    if wire_classes(cfg):
        return
    uses = {
        "LOSS.DICE": cfg.LOSS.DICE > 0,
        "LOSS.SKELETON_RECALL": cfg.LOSS.SKELETON_RECALL > 0,
        "WIRE.LABEL_DILATE": cfg.WIRE.LABEL_DILATE > 0,
        "WIRE.THRESHOLD": isinstance(threshold, float),
        "TRAIN.LABEL_FILL": cfg.TRAIN.LABEL_FILL > 0,
        "TRAIN.AUG_PASTE_WIRES": cfg.TRAIN.AUG_PASTE_WIRES > 0,
        "TEST.SCALE_FUSE wire_max": cfg.TEST.SCALE_FUSE == "wire_max",
        "TEST.SAVE_PROB": cfg.TEST.SAVE_PROB,
    }
    used = [key for key, on in uses.items() if on]
    if used:
        raise ConfigError(
            f"{used[0]} needs a wire class, but DATASET.DATASET {cfg.DATASET.DATASET} has none "
            f"{where}; set WIRE.CLASSES"
        )


def wire_classes(cfg: CfgNode) -> list[int]:
    """The class ids that are wires: WIRE.CLASSES, or when empty the dataset's own
    (DATASET_WIRE_CLASSES: [1] for daodixian_seg; none, [], for cityscapes and list)."""
    own = DATASET_WIRE_CLASSES.get(cfg.DATASET.DATASET, ())
    return [int(c) for c in cfg.WIRE.CLASSES] or list(own)


def wire_tolerance(cfg: CfgNode) -> float:
    """The wire metrics' tolerance as lib.core.wire_metrics takes it: WIRE.TOLERANCE_PX
    (pixels, 1 or more) when set, else WIRE.TOLERANCE_FRACTION (of the diagonal, below 1)."""
    return float(cfg.WIRE.TOLERANCE_PX or cfg.WIRE.TOLERANCE_FRACTION)


def wire_threshold(cfg: CfgNode) -> str | float:
    """WIRE.THRESHOLD as "auto" (the picked file, else argmax), "argmax" or a float in (0, 1);
    anything else is a ConfigError."""
    text = str(cfg.WIRE.THRESHOLD).strip()
    if text in WIRE_THRESHOLD_WORDS:
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise ConfigError(
            f"WIRE.THRESHOLD is {cfg.WIRE.THRESHOLD!r}; use auto (the picked file, else argmax), "
            "argmax or a number in (0, 1)"
        )
    return value


def config_name(cfg_file: str | Path) -> str:
    """The experiment name used for output folders: the yaml file name without extension."""
    return Path(cfg_file).name.split(".")[0]

"""Configuration: yacs defaults + an experiment yaml + command-line overrides.

    cfg = get_config("experiments/daodixian_seg/seg_hrnet_ocr_w48_epoch48_1209.yaml",
                     ["TRAIN.LR", "0.02"])

An unknown key, a wrong type or an unreadable file raises `ConfigError` with a one-line
message naming the key and the file.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from yacs.config import CfgNode

from lib.config.defaults import defaults
from lib.config.paths import ExperimentPaths
from lib.utils.amp import AMP_NAMES

FUSE_MODES = ("sum", "wire_max")  # TEST.SCALE_FUSE: lib.core.inference.ScaleFusion

__all__ = ["ConfigError", "ExperimentPaths", "get_config", "config_name", "wire_classes", "CfgNode"]


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


def _unknown_key(key: str, node: CfgNode, prefix: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(node.keys()), n=1)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return ConfigError(f"{source}: unknown config key {prefix}{key}{hint}")


def _merge_dict(node: CfgNode, data: dict, prefix: str, source: str) -> None:
    """Merge a plain dict into `node`, checking every key and type on the way."""
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in node:
            if not node.is_new_allowed():
                raise _unknown_key(key, node, prefix, source)
            node[key] = CfgNode(value, new_allowed=True) if isinstance(value, dict) else value
            continue
        current = node[key]
        if isinstance(current, CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: config key {full} must be a mapping, got {value!r}")
            _merge_dict(current, value, full + ".", source)
        elif node.is_new_allowed():
            node[key] = value
        else:
            node[key] = _coerce(full, value, current, source)


def _merge_opts(cfg: CfgNode, opts: Sequence[str]) -> None:
    if len(opts) % 2:
        raise ConfigError(f"command line: overrides come in KEY VALUE pairs, got {list(opts)!r}")
    for key, value in zip(opts[0::2], opts[1::2]):
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
        _merge_dict(cfg, data, "", str(path))
    _merge_opts(cfg, list(opts or []))
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
    if not cfg.TEST.WIRE_THRESHOLD < 1:
        raise ConfigError(
            f"TEST.WIRE_THRESHOLD is {cfg.TEST.WIRE_THRESHOLD} {where}; use a value in (0, 1), "
            "0 (picked file or argmax) or -1 (argmax)"
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


def wire_classes(cfg: CfgNode) -> list[int]:
    """The class ids that are wires: TEST.WIRE_CLASSES, or [1] (the power-line wire) when empty."""
    return [int(c) for c in cfg.TEST.WIRE_CLASSES] or [1]


def config_name(cfg_file: str | Path) -> str:
    """The experiment name used for output folders: the yaml file name without extension."""
    return Path(cfg_file).name.split(".")[0]

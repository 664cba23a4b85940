"""Loading weights from every file a user is likely to have.

Accepted sources, told apart by their keys, not their names:
- official segmentation checkpoints (`model.` prefix, plus the criterion's `loss.criterion.weight`);
- DDP checkpoints (`module.` prefix) and this project's checkpoints (`state_dict` inside a dict);
- the official ImageNet file `hrnetv2_w48_imagenet_pretrained.pth` and timm `hrnet_w*` state
  dicts, whose classification-only parts (`incre_modules`, `downsamp_modules`, `final_layer`,
  `classifier`) a segmentation model does not have.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

PREFIXES = ("module.", "model.")
CLASSIFICATION_ONLY = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
# The layers whose shape depends on the number of classes: the only ones skip_head may drop.
HEAD_PREFIXES = ("cls_head.", "aux_head.3.", "last_layer.3.",
                 "refine.fuse.0.", "refine.head.")  # MODEL.REFINE_CHANNELS: logits in, logits out

# Where a weights file the user names but does not have comes from, by its file name: the hint
# a "not found" error adds (pretrained_models/README.md lists them all).
_LINKED = "release; pretrained_models/README.md links it"
WHERE_FROM = (
    (("*_generated_*.pth",), "python tools/pretrain_on_generated.py makes it"),
    (("*imagenet*.pth", "hrnet_w18_small_model_v*.pth"), f"the HRNet image-classification {_LINKED}"),
    (("hrnet_ocr_cs_*.pth",), f"the HRNet-OCR segmentation {_LINKED}"),
)


def not_found(path: Path) -> str:
    """The "weights file not found" message for `path`, with where such a file comes from."""
    hints = [hint for patterns, hint in WHERE_FROM
             if any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns)]
    return f"{path}: weights file not found" + (f" ({hints[0]})" if hints else "")


class WeightsError(ValueError):
    """Weights that cannot go into the model, with a message naming the file and the keys."""


@dataclass
class LoadReport:
    """What happened to each key of the source state dict."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    classification_only: list[str] = field(default_factory=list)  # ImageNet-only, ignored
    skipped_head: list[str] = field(default_factory=list)  # class-dependent, shape differs

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        for name, keys in (("missing (kept as initialised)", self.missing),
                           ("unexpected (ignored)", self.unexpected),
                           ("classification-only (ignored)", self.classification_only),
                           ("head skipped (shape differs)", self.skipped_head)):
            if keys:
                parts.append(f"{len(keys)} {name}: {_short(keys)}")
        return "; ".join(parts)


def _short(keys: list[str], n: int = 3) -> str:
    """A few key names, grouped by their first component, for a one-line report."""
    groups = sorted({k.split(".")[0] for k in keys})
    text = ", ".join(groups[:n])
    return text + (", ..." if len(groups) > n else "")


def read_state_dict(source: str | Path | Mapping[str, torch.Tensor]) -> tuple[dict, str]:
    """Read a file (weights_only) or take a mapping; return (flat state dict, source name)."""
    if isinstance(source, Mapping):
        data, name = dict(source), "<state dict>"
    else:
        path = Path(source)
        if not path.is_file():
            raise WeightsError(not_found(path))
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle, zip and torch errors alike: report one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise WeightsError(f"{path}: not a readable weights file ({first})") from None
        name = str(path)
    for wrapper in ("state_dict", "model_state", "model"):
        if isinstance(data.get(wrapper), Mapping):
            data = dict(data[wrapper])
            break
    if not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{name}: holds no state dict of tensors")
    return data, name


def _strip_prefixes(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        if key.startswith("loss."):  # the official FullModel stores the criterion's class weights
            continue
        changed = True
        while changed:
            changed = False
            for prefix in PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    return out


def load_weights(model: nn.Module, source, *, skip_head: bool = False,
                 strict: bool = False) -> LoadReport:
    """Load `source` (path or state dict) into `model`; return what went where.

    Shape mismatches are refused with a clear message, except in the class-dependent head
    layers when `skip_head` is set (fine-tuning 19-class Cityscapes weights on 2 classes).
    With `strict`, any missing or unexpected key is an error too.
    """
    raw, name = read_state_dict(source)
    state = _strip_prefixes(raw)
    own = model.state_dict()
    report = LoadReport(source=name)
    to_load = {}
    mismatched = []
    for key, value in state.items():
        if key not in own:
            if key.startswith(CLASSIFICATION_ONLY):
                report.classification_only.append(key)
            else:
                report.unexpected.append(key)
        elif own[key].shape != value.shape:
            if skip_head and key.startswith(HEAD_PREFIXES):
                report.skipped_head.append(key)
            else:
                mismatched.append(f"{key} {tuple(value.shape)} vs model {tuple(own[key].shape)}")
        else:
            to_load[key] = value
    if mismatched:
        hint = ""
        if all(m.startswith(HEAD_PREFIXES) for m in mismatched):
            hint = " (a head trained for another number of classes: set MODEL.PRETRAINED_SKIP_HEAD True to fine-tune)"
        raise WeightsError(f"{name}: shape mismatch in {len(mismatched)} tensors, e.g. "
                           f"{'; '.join(mismatched[:2])}{hint}")
    if not to_load:
        raise WeightsError(f"{name}: no tensor matches the model (is it an HRNet file?)")
    report.missing = [k for k in own if k not in to_load and k not in report.skipped_head]
    report.loaded = sorted(to_load)
    if strict and (report.missing or report.unexpected):
        hint = ""
        if any(k.startswith("refine.") for k in report.unexpected):
            hint = " (weights of a refined model: set MODEL.REFINE_CHANNELS as it was trained)"
        elif any(k.startswith("refine.") for k in report.missing):
            hint = " (these weights have no refinement: set MODEL.REFINE_CHANNELS 0)"
        raise WeightsError(f"{name}: strict load failed: {report.summary()}{hint}")
    model.load_state_dict(to_load, strict=False)
    logger.info(report.summary())
    return report

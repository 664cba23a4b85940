"""Models: a registry from `MODEL.NAME` to builder, and `get_seg_model(cfg)`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from torch import nn

from lib.models.ensemble import Ensemble, model_files
from lib.models.seg_hrnet import SegHRNet, build_seg_hrnet
from lib.models.seg_hrnet_ocr import SegHRNetOCR, build_seg_hrnet_ocr
from lib.models.weights import LoadReport, WeightsError, load_weights

logger = logging.getLogger(__name__)

MODELS: dict[str, Callable[..., nn.Module]] = {
    "seg_hrnet": build_seg_hrnet,
    "seg_hrnet_ocr": build_seg_hrnet_ocr,
}

__all__ = ["MODELS", "get_seg_model", "load_trained", "load_weights", "LoadReport",
           "WeightsError", "SegHRNet", "SegHRNetOCR", "Ensemble", "model_files"]


def get_seg_model(cfg, load_pretrained: bool = True) -> nn.Module:
    """Build `cfg.MODEL.NAME` and load `cfg.MODEL.PRETRAINED` when set and `load_pretrained`."""
    name = cfg.MODEL.NAME
    if name not in MODELS:
        raise ValueError(f"MODEL.NAME {name!r} is not a known model; known: {', '.join(sorted(MODELS))}")
    try:
        model = MODELS[name](cfg)
    except ValueError as err:
        raise ValueError(f"cannot build {name}: {err}") from None
    outputs = 2 if name == "seg_hrnet_ocr" else 1
    if cfg.MODEL.NUM_OUTPUTS != outputs:
        raise ValueError(f"MODEL.NUM_OUTPUTS is {cfg.MODEL.NUM_OUTPUTS} but {name} has {outputs} output(s)")
    if load_pretrained and cfg.MODEL.PRETRAINED:
        load_weights(model, cfg.MODEL.PRETRAINED, skip_head=cfg.MODEL.PRETRAINED_SKIP_HEAD)
    return model


def load_trained(cfg, source) -> nn.Module:
    """The one way every tool loads a *trained* model for inference: `cfg.MODEL.NAME` built
    without MODEL.PRETRAINED, then `source` (a weights file or state dict) loaded strictly: a
    file missing any tensor of the model (or holding others) is refused with WeightsError,
    naming the count and an example key. MODEL.PRETRAINED (backbones) stays the only
    non-strict, reported path, in `get_seg_model`.

    Several files (`a.pth,b.pth`, see `lib.models.ensemble.model_files`) give an `Ensemble`
    of the models, each loaded the same strict way; one file gives the bare model.
    """
    files = model_files(source) if isinstance(source, (str, Path, list, tuple)) else [source]
    if not files:
        raise WeightsError("no weights file given")
    models = []
    for file in files:
        model = get_seg_model(cfg, load_pretrained=False)
        load_weights(model, file, strict=True)
        models.append(model)
    return models[0] if len(models) == 1 else Ensemble(models)

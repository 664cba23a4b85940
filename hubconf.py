"""torch.hub entry points: the models of the experiment files, with trained weights if given.

    model = torch.hub.load("path/to/this/repo", "hrnet_ocr_w48", source="local",
                           weights="output/cityscapes/.../best.pth")
    model = torch.hub.load("path/to/this/repo", "hrnet_ocr_w18_small_powerline", source="local")

`weights`: a state dict of ours or of the official project (loaded strictly: every tensor of
the model must be in it); None gives the untrained network (no download ever happens).
`num_classes` overrides DATASET.NUM_CLASSES (then official weights of another class count
cannot load). The model is returned in eval mode on the CPU.
"""

from __future__ import annotations

from pathlib import Path

dependencies = ["torch", "yacs", "cv2", "numpy"]

_EXPERIMENTS = Path(__file__).resolve().parent / "experiments"
_CONFIGS = {
    "hrnet_ocr_w48": "cityscapes/seg_hrnet_ocr_w48_train_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml",
    "hrnet_w48": "cityscapes/seg_hrnet_w48_train_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml",
    "hrnet_w18_small_v1": "cityscapes/seg_hrnet_w18_small_v1_512x1024_sgd_lr1e-2_wd5e-4_bs_24_epoch484.yaml",
    "hrnet_w18_small_v2": "cityscapes/seg_hrnet_w18_small_v2_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml",
    "hrnet_ocr_w48_powerline": "daodixian_seg/seg_hrnet_ocr_w48_epoch48_1209.yaml",
    "hrnet_ocr_w18_small_powerline": "daodixian_seg/seg_hrnet_ocr_w18_small_v1_real.yaml",
}


def _build(entry: str, weights: str | None, num_classes: int | None):
    # imported here: torch.hub reads `dependencies` before the repository is importable
    from lib.config import get_config
    from lib.models import get_seg_model, load_weights

    opts = ["MODEL.PRETRAINED", ""]
    if num_classes is not None:
        opts += ["DATASET.NUM_CLASSES", str(int(num_classes))]
    model = get_seg_model(get_config(_EXPERIMENTS / _CONFIGS[entry], opts), load_pretrained=False)
    if weights is not None:
        load_weights(model, weights, strict=True)
    return model.eval()


def _entry(name: str, doc: str):
    """A torch.hub entry point `name(weights=None, num_classes=None)` for _CONFIGS[name]."""

    def load(weights: str | None = None, num_classes: int | None = None):
        return _build(name, weights, num_classes)

    load.__name__ = load.__qualname__ = name
    load.__doc__ = doc
    return load


hrnet_ocr_w48 = _entry(
    "hrnet_ocr_w48",
    "HRNetV2-W48 + OCR, Cityscapes (19 classes): the 81.6 mIoU model of the official project.",
)
hrnet_w48 = _entry("hrnet_w48", "HRNetV2-W48, Cityscapes (19 classes).")
hrnet_w18_small_v1 = _entry("hrnet_w18_small_v1", "HRNetV2-W18-Small-v1, Cityscapes (19 classes).")
hrnet_w18_small_v2 = _entry("hrnet_w18_small_v2", "HRNetV2-W18-Small-v2, Cityscapes (19 classes).")
hrnet_ocr_w48_powerline = _entry(
    "hrnet_ocr_w48_powerline", "HRNetV2-W48 + OCR for power lines (background, wire)."
)
hrnet_ocr_w18_small_powerline = _entry(
    "hrnet_ocr_w18_small_powerline",
    "HRNetV2-W18-Small-v1 + OCR for power lines (the few-real-photos recipe).",
)

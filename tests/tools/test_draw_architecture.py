"""tools/draw_architecture.py: runs, writes both figures, and reads its numbers from the model's parser."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lib.config import get_config
from lib.models import get_seg_model
from tools.draw_architecture import DEFAULT_CFG, describe, main

REPO = Path(__file__).resolve().parents[2]
S1 = (
    REPO
    / "experiments/cityscapes/seg_hrnet_w18_small_v1_512x1024_sgd_lr1e-2_wd5e-4_bs_24_epoch484.yaml"
)


def test_draws_both_figures_for_the_default_ocr_config(tmp_path):
    assert main(["--cfg", str(REPO / DEFAULT_CFG), "--out", str(tmp_path)]) == 0
    for name in ("hrnet.png", "ocr.png"):
        with Image.open(tmp_path / name) as image:
            assert image.width > 1000 and image.height > 400


def test_config_without_ocr_draws_only_the_backbone(tmp_path):
    assert main(["--cfg", str(S1), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "hrnet.png").is_file()
    assert not (tmp_path / "ocr.png").exists()


def test_unreadable_config_is_a_one_line_error(tmp_path, capsys):
    assert main(["--cfg", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "cannot read config file" in err[0]


def test_layout_widths_match_the_built_model():
    cfg = get_config(S1, ["MODEL.PRETRAINED", ""])
    layout = describe(cfg)
    model = get_seg_model(cfg)
    assert list(layout.stages[-1].widths) == list(model.out_channels)
    assert layout.concat_width == sum(model.out_channels)
    assert layout.stages[0].widths[0] == model.layer1[-1].conv3.out_channels


def test_w48_ocr_layout_is_the_published_one():
    layout = describe(get_config(REPO / DEFAULT_CFG))
    assert [s.widths for s in layout.stages[1:]] == [(48, 96), (48, 96, 192), (48, 96, 192, 384)]
    assert [s.modules for s in layout.stages] == [1, 1, 4, 3]
    assert (
        layout.concat_width == 720
        and layout.ocr
        and layout.ocr_mid == 512
        and layout.ocr_key == 256
    )

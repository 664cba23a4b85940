"""Draw the two architecture figures the README shows: figures/hrnet.png and figures/ocr.png.

Every width, branch count, block count and module count in the figures is read from an
experiment file through the model's own stage parser, so the figures follow the config:

    python tools/draw_architecture.py
    python tools/draw_architecture.py --cfg experiments/daodixian_seg/seg_hrnet_ocr_w48_epoch48_1209.yaml --out /tmp/figs

Pillow only (no plotting library).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # a script: tools/_checkout.py first
    import _checkout  # noqa: F401

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lib.config import get_config
from lib.models.hrnet import StageSpec
from tools import cli

DEFAULT_CFG = (
    "experiments/cityscapes/seg_hrnet_ocr_w48_train_512x1024_sgd_lr1e-2_wd5e-4_bs_12_epoch484.yaml"
)
STEM_CHANNELS = 64  # fixed in the HRNet stem (two stride-2 3x3 convolutions)

INK = (40, 40, 40)
GREY = (120, 120, 120)
# One colour per resolution branch (1/4, 1/8, 1/16, 1/32), light fill and dark outline.
BRANCH_FILL = [(255, 226, 204), (214, 234, 248), (213, 245, 227), (235, 222, 240)]
BRANCH_LINE = [(214, 115, 40), (41, 128, 185), (39, 174, 96), (142, 68, 173)]
UP_COLOUR = (41, 128, 185)
DOWN_COLOUR = (192, 57, 43)

logger = logging.getLogger("draw_architecture")


@dataclass(frozen=True)
class Stage:
    """One stage as the figure needs it."""

    modules: int
    block: str
    blocks: tuple[int, ...]
    widths: tuple[int, ...]  # output channels per branch (block expansion applied)


@dataclass(frozen=True)
class Layout:
    """What the figures show, derived from a config."""

    name: str
    stages: tuple[Stage, ...]  # stage 1..4
    concat_width: int  # channels of the HRNetV2 representation (all branches concatenated)
    num_classes: int
    ocr: bool
    ocr_mid: int
    ocr_key: int
    ocr_dropout: float
    balance_weights: tuple[float, ...]


def describe(cfg) -> Layout:
    """The figure layout of `cfg`, using the same stage parser as the model."""
    stages = []
    for k in (1, 2, 3, 4):
        spec = StageSpec.parse(cfg.MODEL.EXTRA, f"STAGE{k}")
        stages.append(
            Stage(
                modules=spec.num_modules,
                block=spec.block.__name__,
                blocks=spec.num_blocks,
                widths=tuple(c * spec.block.expansion for c in spec.num_channels),
            )
        )
    return Layout(
        name=cfg.MODEL.NAME,
        stages=tuple(stages),
        concat_width=sum(stages[-1].widths),
        num_classes=cfg.DATASET.NUM_CLASSES,
        ocr=cfg.MODEL.NAME == "seg_hrnet_ocr",
        ocr_mid=cfg.MODEL.OCR.MID_CHANNELS,
        ocr_key=cfg.MODEL.OCR.KEY_CHANNELS,
        ocr_dropout=cfg.MODEL.OCR.DROPOUT,
        balance_weights=tuple(cfg.LOSS.BALANCE_WEIGHTS),
    )


class Canvas:
    """A white image with the few primitives the figures use."""

    def __init__(self, width: int, height: int):
        self.image = Image.new("RGB", (width, height), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.fonts = {size: ImageFont.load_default(size=size) for size in (13, 15, 18, 22)}

    def text(self, xy, text: str, size: int = 15, fill=INK, anchor: str = "mm") -> None:
        self.draw.multiline_text(
            xy, text, font=self.fonts[size], fill=fill, anchor=anchor, align="center", spacing=3
        )

    def box(
        self, x0, y0, x1, y1, fill, outline=INK, text: str = "", size: int = 15, width: int = 2
    ):
        self.draw.rounded_rectangle(
            (x0, y0, x1, y1), radius=8, fill=fill, outline=outline, width=width
        )
        if text:
            self.text(((x0 + x1) / 2, (y0 + y1) / 2), text, size)

    def arrow(self, points, fill=INK, width: int = 2, head: int = 9) -> None:
        """A polyline through `points` with an arrow head at the last point."""
        self.draw.line(points, fill=fill, width=width, joint="curve")
        (x0, y0), (x1, y1) = points[-2], points[-1]
        dx, dy = x1 - x0, y1 - y0
        norm = max((dx * dx + dy * dy) ** 0.5, 1e-6)
        ux, uy = dx / norm, dy / norm
        left = (x1 - head * ux + head * 0.5 * uy, y1 - head * uy - head * 0.5 * ux)
        right = (x1 - head * ux - head * 0.5 * uy, y1 - head * uy + head * 0.5 * ux)
        self.draw.polygon([(x1, y1), left, right], fill=fill)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(path, optimize=True)


def draw_hrnet(layout: Layout, path: Path) -> None:
    """Parallel branches per stage, exchange units between stages, the concatenated head."""
    stages = layout.stages
    n_rows = len(stages[-1].widths)
    row_y = [150 + 115 * r for r in range(n_rows)]
    heights = [70, 54, 40, 30, 24, 20][:n_rows]  # lower resolution, thinner map
    box_w, gap = 165, 56

    def lane_width(stage: Stage) -> int:  # room for the exchange unit's arrows
        n = len(stage.widths)
        return 14 * n * (n - 1) + 12 if n > 1 else 0

    width = 330 + sum(box_w + lane_width(s) + gap for s in stages) + 200
    c = Canvas(width, row_y[-1] + 190)
    c.text(
        (width / 2, 30),
        f"HRNetV2 backbone ({layout.name}): {len(stages)} stages, {n_rows} parallel resolutions",
        22,
    )
    for r, y in enumerate(row_y):
        c.text((42, y), f"1/{4 * 2**r}", 18, fill=BRANCH_LINE[r % 4])

    def feature(x0, x1, r, text):
        h = heights[r]
        c.box(
            x0,
            row_y[r] - h / 2,
            x1,
            row_y[r] + h / 2,
            BRANCH_FILL[r % 4],
            BRANCH_LINE[r % 4],
            text,
            13,
        )

    # Input and stem (stride 4 after two stride-2 convolutions).
    c.box(80, row_y[0] - 45, 160, row_y[0] + 45, (245, 245, 245), GREY, "image\n3 ch", 15)
    c.arrow([(160, row_y[0]), (190, row_y[0])])
    c.box(
        190,
        row_y[0] - 45,
        300,
        row_y[0] + 45,
        (245, 245, 245),
        GREY,
        f"stem\n2 x conv3x3\nstride 2\n{STEM_CHANNELS} ch",
        13,
    )
    c.arrow([(300, row_y[0]), (330, row_y[0])])

    x = 330
    previous = 1
    for k, stage in enumerate(stages, start=1):
        n = len(stage.widths)
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
        lane = lane_width(stage)
        x0, x1 = x, x + box_w
        c.text(((x0 + x1 + lane) / 2, 78), f"stage {k}", 18)
        c.text(
            ((x0 + x1 + lane) / 2, 102),
            f"{stage.modules} module{'s' if stage.modules > 1 else ''} of {stage.block}s",
            13,
            GREY,
        )
        for r, width in enumerate(stage.widths):
            feature(
                x0,
                x1,
                r,
                f"{width} ch\n{stage.blocks[r]} block{'s' if stage.blocks[r] != 1 else ''}",
            )
        # The exchange unit closing each module: every branch feeds every other.
        for p, (i, j) in enumerate(sorted(pairs, key=lambda ij: (ij[0] > ij[1], ij))):
            colour = DOWN_COLOUR if j > i else UP_COLOUR
            xs = x1 + 12 + 14 * p
            c.arrow([(xs, row_y[i]), (xs, row_y[j])], fill=colour, width=2, head=7)
        for r in range(n if lane else 0):
            c.draw.line([(x1, row_y[r]), (x1 + lane, row_y[r])], fill=INK, width=2)
        x1 += lane
        # Transition to the next stage: keep the existing branches, add one lower resolution.
        if k < len(stages):
            nxt = stages[k]
            for r in range(len(nxt.widths)):
                if r < n:
                    c.arrow([(x1, row_y[r]), (x1 + gap, row_y[r])])
                else:
                    src = row_y[n - 1]
                    c.arrow(
                        [
                            (x1, src),
                            (x1 + gap / 2, src),
                            (x1 + gap / 2, row_y[r]),
                            (x1 + gap, row_y[r]),
                        ],
                        fill=DOWN_COLOUR,
                    )
            previous = len(nxt.widths)
        x = x1 + gap

    # HRNetV2 head: upsample every branch to 1/4 and concatenate.
    hx0, hx1 = x, x + 180
    for r in range(previous):
        c.arrow(
            [(x - gap, row_y[r]), (hx0, row_y[0] if r == 0 else row_y[0] + 10 * r)],
            fill=UP_COLOUR if r else INK,
        )
    c.box(
        hx0,
        row_y[0] - 50,
        hx1,
        row_y[0] + 50,
        BRANCH_FILL[0],
        BRANCH_LINE[0],
        f"upsample to 1/4\n+ concatenate\n{layout.concat_width} ch",
        15,
    )
    head = (
        "OCR head\n(see ocr.png)"
        if layout.ocr
        else f"1x1 conv, BN, ReLU\n1x1 conv\n{layout.num_classes} classes"
    )
    c.arrow([((hx0 + hx1) / 2, row_y[0] + 50), ((hx0 + hx1) / 2, row_y[0] + 110)])
    c.box(hx0, row_y[0] + 110, hx1, row_y[0] + 190, (245, 245, 245), GREY, head, 15)

    ly = row_y[-1] + 110
    c.arrow([(90, ly), (150, ly)], fill=DOWN_COLOUR)
    c.text((160, ly), "to a lower resolution: strided 3x3 conv(s)", 15, anchor="lm")
    c.arrow([(560, ly), (620, ly)], fill=UP_COLOUR)
    c.text(
        (630, ly),
        "to a higher resolution: 1x1 conv + bilinear upsampling (summed)",
        15,
        anchor="lm",
    )
    c.text(
        (90, ly + 40),
        f"widths from MODEL.EXTRA: {', '.join(map(str, stages[-1].widths))}; "
        "each box is one branch of parallel residual blocks",
        15,
        GREY,
        anchor="lm",
    )
    c.save(path)


def draw_ocr(layout: Layout, path: Path) -> None:
    """The OCR head: soft object regions, region features, pixel-region attention."""
    c = Canvas(1640, 600)
    k, mid, key = layout.num_classes, layout.ocr_mid, layout.ocr_key
    weights = layout.balance_weights
    aux_w, main_w = weights[:2] if len(weights) >= 2 else (1.0, weights[0] if weights else 1.0)
    c.text((820, 30), "OCR: object-contextual representations on top of HRNetV2", 22)
    grey, blue, green, orange = (245, 245, 245), BRANCH_FILL[1], BRANCH_FILL[2], BRANCH_FILL[0]
    top, mid_y, low = 120, 300, 480

    def node(x, y, w, h, fill, text, outline=INK):
        c.box(x - w / 2, y - h / 2, x + w / 2, y + h / 2, fill, outline, text, 15)
        return x - w / 2, x + w / 2, y - h / 2, y + h / 2

    node(90, mid_y, 120, 70, grey, "image\nH x W", GREY)
    c.arrow([(150, mid_y), (190, mid_y)])
    node(270, mid_y, 160, 90, orange, "HRNetV2\nbackbone")
    c.arrow([(350, mid_y), (390, mid_y)])
    node(470, mid_y, 160, 90, orange, f"pixel features\n{layout.concat_width} ch\nH/4 x W/4")

    # Aux branch: a coarse segmentation that defines soft object regions.
    c.arrow([(470, mid_y - 45), (470, top), (560, top)])
    node(660, top, 200, 80, grey, f"aux head\n1x1 conv, BN, ReLU\n1x1 conv -> {k}")
    c.arrow([(760, top), (820, top)])
    node(
        930,
        top,
        220,
        80,
        blue,
        f"soft object regions\n{k} x H/4 x W/4\n(aux output, loss x{aux_w:g})",
    )

    # Pixel representation.
    c.arrow([(550, mid_y), (590, mid_y)])
    node(680, mid_y, 180, 80, grey, f"3x3 conv\nBN, ReLU\n-> {mid} ch")
    c.arrow([(770, mid_y), (830, mid_y)])
    node(930, mid_y, 200, 80, green, f"pixel\nrepresentations\n{mid} x H/4 x W/4")

    # Region features: softmax over pixels of each region map, weighted sum of pixel features.
    node(1180, top, 220, 90, grey, f"spatial gather\nsoftmax over pixels\n-> {k} region features")
    c.arrow([(1040, top), (1070, top)])
    c.arrow([(970, mid_y - 40), (970, 215), (1120, 215), (1120, top + 45)])
    node(1440, top, 200, 80, blue, f"object region\nrepresentations\n{k} x {mid}")
    c.arrow([(1290, top), (1340, top)])

    # Pixel-region relation and object context.
    node(
        1180,
        mid_y + 20,
        240,
        110,
        grey,
        f"object attention\nquery: pixels, key/value: regions\n{key}-ch key space\n-> context {mid} ch",
    )
    c.arrow([(1440, top + 40), (1440, mid_y + 20), (1300, mid_y + 20)])
    c.arrow([(1030, mid_y + 20), (1060, mid_y + 20)])

    # Augmented representation and the final classifier.
    node(
        1180,
        low,
        240,
        90,
        grey,
        f"concat [context, pixel]\n1x1 conv -> {mid}, BN, ReLU\ndropout {layout.ocr_dropout:g}",
    )
    c.arrow([(1180, mid_y + 75), (1180, low - 45)])
    c.arrow([(930, mid_y + 40), (930, low), (1060, low)])
    node(
        1470, low, 220, 90, green, f"1x1 conv -> {k}\nsegmentation\n(main output, loss x{main_w:g})"
    )
    c.arrow([(1300, low), (1360, low)])
    c.text(
        (90, 570),
        "both outputs are at 1/4 resolution; the loss and inference upsample them "
        "bilinearly to the label / image size",
        15,
        GREY,
        anchor="lm",
    )
    c.save(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.tool_parser(__doc__, cfg=str(DEFAULT_CFG))
    parser.add_argument("--out", default="figures", help="folder for hrnet.png and ocr.png")
    return cli.parse(parser, argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    return cli.run(lambda: draw(args))


def draw(args) -> None:
    layout = describe(get_config(args.cfg, args.opts))
    out = Path(args.out)
    draw_hrnet(layout, out / "hrnet.png")
    written = [out / "hrnet.png"]
    if layout.ocr:
        draw_ocr(layout, out / "ocr.png")
        written.append(out / "ocr.png")
    else:
        logger.info("%s has no OCR head: ocr.png not drawn", args.cfg)
    logger.info("wrote %s", ", ".join(map(str, written)))


if __name__ == "__main__":
    sys.exit(main())

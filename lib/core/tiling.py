"""Native-resolution tiled inference with overlap and blending, for photos too large to shrink.

Power-line photos are 5472x3078 and their wires 2-10 px wide: shrunk to the 2048 base size the
wires vanish, so `tools/predict.py` runs the network on native-resolution tiles instead.

- Tiles of `tile_size` (h, w) overlap by at least `overlap` pixels; tile origins are
  multiples of `align` (the network's output stride, 32 for HRNet) so that every tile sees the
  same down-sampling grid as the whole image would; the last tile of a row or column is flush
  with the border. An image smaller than a tile is one tile of its own size.
- Each tile goes through the network at every scale (the tile resized by the scale, as test.py
  resizes the image) with optional flip, using `lib.core.inference.batch_scores`, so the scores are
  the official ones: exp of the (flip-averaged) logits, summed over scales.
- Overlapping tiles are cross-faded: a tile's weight ramps linearly from ~0 at an inner edge to
  1 across the overlap with its neighbour (image borders keep weight 1), so there are no seams.
- Tiles of one row go through the network `tile_batch` at a time, and only one row band of
  scores (C, tile_h + overlap, W) is held: rows no later tile touches are finished and handed
  out (`iter_tiled_rows`), so memory does not grow with the photo beyond its label map.

`TiledSettings` holds the tiles' and the inference's settings, built once from the config
(`from_cfg`); its `predict` is `tiled_predict` with them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.core.inference import InferenceSettings, ScaleFusion, batch_scores
from lib.core.thresholds import decide, probability_png, wire_probability
from lib.datasets.base import MEAN, STD, normalise
from lib.utils.runtime import device_of

__all__ = [
    "tile_origins",
    "edge_ramp",
    "normalise",
    "iter_tiled_rows",
    "tiled_inference",
    "tiled_predict",
    "class_argmax",
    "TiledSettings",
]


def tile_origins(length: int, tile: int, overlap: int, align: int = 32) -> list[int]:
    """Start offsets along one axis: neighbours overlap by >= `overlap`, starts are multiples
    of `align` except the last (flush with the end); a single 0 when `tile` >= `length`."""
    if tile >= length:
        return [0]
    if tile <= overlap:
        raise ValueError(f"tile size {tile} must be larger than the overlap {overlap}")
    step = max(align, (tile - overlap) // align * align)
    origins = list(range(0, length - tile, step))
    if origins[-1] != length - tile:
        origins.append(length - tile)
    return origins


def edge_ramp(size: int, before: int, after: int) -> torch.Tensor:
    """(size,) weights: rising over the first `before` samples, falling over the last `after`."""
    w = torch.ones(size)
    if before > 0:
        w[:before] = torch.minimum(w[:before], (torch.arange(before) + 0.5) / before)
    if after > 0:
        w[size - after :] = torch.minimum(
            w[size - after :], (torch.arange(after, 0, -1) - 0.5) / after
        )
    return w


def _overlaps(origins: list[int], tile: int) -> list[tuple[int, int]]:
    """(overlap with the previous tile, overlap with the next tile) for each origin."""
    out = []
    for i, o in enumerate(origins):
        before = origins[i - 1] + tile - o if i > 0 else 0
        after = o + tile - origins[i + 1] if i + 1 < len(origins) else 0
        out.append((max(before, 0), max(after, 0)))
    return out


def _tile_scores(
    model: nn.Module, x: torch.Tensor, scales: Sequence[float], kwargs: dict,
    fused: ScaleFusion,
) -> torch.Tensor:
    """(N, 3, h, w) tiles -> (N, C, h, w) scores over `scales` combined by a fresh `fused`
    (lib.core.inference.ScaleFusion: the official sum, or TEST.SCALE_FUSE wire_max)."""
    h, w = x.shape[-2:]
    for scale in scales:
        size = (max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5)))
        xs = (
            x
            if size == (h, w)
            else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        )
        out = batch_scores(model, xs, **kwargs)
        if size != (h, w):
            out = F.interpolate(
                out, size=(h, w), mode="bilinear", align_corners=kwargs["align_corners"]
            )
        fused.add(out)
    return fused.result()


@torch.no_grad()
def iter_tiled_rows(
    model: nn.Module,
    image: np.ndarray,
    *,
    num_classes: int,
    tile_size: Sequence[int] = (1024, 1024),
    overlap: int = 256,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    tile_batch: int = 4,
    align: int = 32,
    align_corners: bool = True,
    output_index: int = -1,
    amp: str = "",
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
    fuse: str = "sum",
    wire_classes: Sequence[int] = (1,),
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (y0, scores) for consecutive finished row bands of an RGB uint8 (H, W, 3) photo.

    scores: (C, rows, W) float32 blended exp-logits on the model's device; the bands cover
    rows 0..H in order. tile_size is (h, w). The model is expected to be in eval mode.
    `fuse` / `wire_classes`: how the scales combine (TEST.SCALE_FUSE; see ScaleFusion).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"tiled inference expects an RGB (H, W, 3) image, got shape {image.shape}")
    device = device_of(model)
    height, width = image.shape[:2]
    th, tw = min(int(tile_size[0]), height), min(int(tile_size[1]), width)
    ys, xs = tile_origins(height, th, overlap, align), tile_origins(width, tw, overlap, align)
    y_ov, x_ov = _overlaps(ys, th), _overlaps(xs, tw)
    col_weights = [edge_ramp(tw, *x_ov[j]).to(device) for j in range(len(xs))]
    kwargs = dict(flip=flip, align_corners=align_corners, output_index=output_index, amp=amp)

    band_y0 = 0  # first row held in `acc`
    acc = torch.zeros((num_classes, 0, width), device=device)
    wsum = torch.zeros((0, width), device=device)
    for i, y0 in enumerate(ys):
        grow = y0 + th - band_y0 - acc.shape[1]
        if grow > 0:
            acc = torch.cat([acc, acc.new_zeros((num_classes, grow, width))], 1)
            wsum = torch.cat([wsum, wsum.new_zeros((grow, width))], 0)
        row_weight = edge_ramp(th, *y_ov[i]).to(device)
        for start in range(0, len(xs), max(1, tile_batch)):
            cols = list(range(start, min(start + max(1, tile_batch), len(xs))))
            tiles = torch.stack(
                [normalise(image[y0 : y0 + th, xs[j] : xs[j] + tw], mean, std) for j in cols]
            )
            scores = _tile_scores(model, tiles.to(device), scales, kwargs,
                                  ScaleFusion(fuse, wire_classes))
            r0 = y0 - band_y0
            for k, j in enumerate(cols):
                weight = row_weight[:, None] * col_weights[j][None, :]
                # in place: scores * weight as a temporary costs a (C, th, tw) tensor a tile
                acc[:, r0 : r0 + th, xs[j] : xs[j] + tw].addcmul_(scores[k], weight)
                wsum[r0 : r0 + th, xs[j] : xs[j] + tw].add_(weight)
        done = (ys[i + 1] if i + 1 < len(ys) else height) - band_y0  # rows no later tile touches
        yield band_y0, acc[:, :done] / wsum[:done]
        acc, wsum, band_y0 = acc[:, done:], wsum[done:], band_y0 + done


def tiled_inference(model: nn.Module, image: np.ndarray, **kwargs) -> torch.Tensor:
    """(1, C, H, W) blended scores of the whole photo (holds them all: for tests and small photos)."""
    return torch.cat([scores for _, scores in iter_tiled_rows(model, image, **kwargs)], 1)[None]


def class_argmax(scores: torch.Tensor) -> torch.Tensor:
    """(C, h, w) -> (h, w) uint8 index of the first largest score; a loop over classes is many
    times faster on CPU than `argmax(0)`, which reduces across the outermost dimension."""
    best, labels = (
        scores[0].clone(),
        torch.zeros(scores.shape[1:], dtype=torch.uint8, device=scores.device),
    )
    for c in range(1, scores.shape[0]):
        better = scores[c] > best
        labels[better] = c
        best = torch.where(better, scores[c], best)
    return labels


def tiled_predict(
    model: nn.Module,
    image: np.ndarray,
    *,
    wire_threshold: float = 0.0,
    wire_classes: Sequence[int] = (1,),
    return_prob: bool = False,
    **kwargs,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 class ids of an RGB uint8 (H, W, 3) photo, in bounded memory.

    Argmax unless `wire_threshold` > 0 (see lib/core/thresholds.py). With `return_prob`, also
    the (H, W) uint8 wire probability (255 = 1.0).
    """
    labels = np.empty(image.shape[:2], np.uint8)
    prob = np.empty(image.shape[:2], np.uint8) if return_prob else None
    for y0, scores in iter_tiled_rows(model, image, wire_classes=wire_classes, **kwargs):
        rows = slice(y0, y0 + scores.shape[1])
        if wire_threshold > 0:
            labels[rows] = decide(scores, wire_threshold, wire_classes).to(torch.uint8).cpu().numpy()
        else:
            labels[rows] = class_argmax(scores).cpu().numpy()
        if prob is not None:
            prob[rows] = probability_png(wire_probability(scores, wire_classes))
    return (labels, prob) if return_prob else labels


@dataclass(frozen=True)
class TiledSettings:
    """How `tiled_predict` runs over a photo: the tiles (tile_size (h, w), overlap, tile_batch,
    align: TEST.TILE_SIZE, TILE_OVERLAP, TILE_BATCH) and `inference`, whose scales are
    TEST.SCALE_LIST times TEST.TILE_SCALE (its base size, window and window batch are not
    used: each tile is one window)."""

    inference: InferenceSettings
    tile_size: tuple[int, int] = (1024, 1024)
    overlap: int = 256
    tile_batch: int = 4
    align: int = 32

    @classmethod
    def from_cfg(cls, cfg) -> TiledSettings:
        whole = InferenceSettings.from_cfg(cfg)
        return cls(
            inference=replace(whole, scales=tuple(cfg.TEST.TILE_SCALE * s for s in whole.scales)),
            tile_size=(cfg.TEST.TILE_SIZE[1], cfg.TEST.TILE_SIZE[0]),  # config: width x height
            overlap=cfg.TEST.TILE_OVERLAP,
            tile_batch=cfg.TEST.TILE_BATCH,
        )

    def kwargs(self) -> dict:
        """`iter_tiled_rows` keyword arguments."""
        s = self.inference
        return dict(
            num_classes=s.num_classes, tile_size=self.tile_size, overlap=self.overlap,
            scales=s.scales, flip=s.flip, tile_batch=self.tile_batch, align=self.align,
            align_corners=s.align_corners, output_index=s.output_index, amp=s.amp,
            fuse=s.fuse, wire_classes=s.wire_classes,
        )  # fmt: skip

    def predict(self, model: nn.Module, image: np.ndarray, *, wire_threshold: float = 0.0,
                return_prob: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """`tiled_predict` of an RGB uint8 (H, W, 3) photo with these settings."""
        return tiled_predict(model, image, wire_threshold=wire_threshold,
                             return_prob=return_prob, **self.kwargs())

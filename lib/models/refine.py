"""A full-resolution refinement of a stride-4 segmentation (ours; `MODEL.REFINE_CHANNELS`).

HRNet's outputs have a quarter of the input's resolution; upsampled bilinearly they cannot
place a 1-3 px wire's edges closer than that grid allows. The refinement looks at the input
image itself at full resolution and corrects the upsampled logits:

    up  = bilinear(coarse, image size)
    out = up + head(conv_bn_relu(cat(conv_bn_relu(image), up)))

`head` starts at zero, so an untrained refinement returns exactly the upsampled logits (the
official computation) and training moves it from there. Off by default: with
`MODEL.REFINE_CHANNELS 0` the models have no refinement module and no extra state-dict keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lib.models.hrnet import conv_bn

__all__ = ["FullResolutionRefine", "refinement"]


class FullResolutionRefine(nn.Module):
    """forward(image (N, 3, H, W), coarse (N, K, h, w)) -> refined logits (N, K, H, W)."""

    def __init__(self, num_classes: int, channels: int, align_corners: bool):
        super().__init__()
        if channels <= 0:
            raise ValueError(f"MODEL.REFINE_CHANNELS must be > 0 to build a refinement, got {channels}")
        self.align_corners = align_corners
        self.image_conv = conv_bn(3, channels, 3)
        self.fuse = conv_bn(channels + num_classes, channels, 3)
        self.head = nn.Conv2d(channels, num_classes, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, image: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(coarse, size=image.shape[-2:], mode="bilinear",
                           align_corners=self.align_corners)
        feats = self.image_conv(image)
        feats = self.fuse(torch.cat([feats, up.to(feats.dtype)], dim=1))
        return up + self.head(feats).to(up.dtype)


def refinement(num_classes: int, channels: int, align_corners: bool) -> FullResolutionRefine | None:
    """The models' `refine` module for MODEL.REFINE_CHANNELS: None when 0 (no module, no keys).

    Build it after the official `init_weights`, which would overwrite its zero head.
    """
    return FullResolutionRefine(num_classes, channels, align_corners) if channels else None

"""HRNetV2 segmentation: the four branches upsampled, concatenated and classified per pixel."""

from __future__ import annotations

import torch
from torch import nn

from lib.models.hrnet import BN_MOMENTUM, HRNetBackbone, init_weights
from lib.models.refine import refinement


class SegHRNet(HRNetBackbone):
    """HRNetV2 + a 1x1 conv/BN/ReLU/classifier head (`last_layer`).

    forward: (N, 3, H, W) -> logits (N, num_classes, H/4, W/4); with `refine_channels` > 0
    (ours, off in the official configs) refined to (N, num_classes, H, W) by
    `FullResolutionRefine`.
    """

    def __init__(self, extra, num_classes: int, align_corners: bool = True, refine_channels: int = 0):
        super().__init__(extra, align_corners)
        width = sum(self.out_channels)
        kernel = int(extra.get("FINAL_CONV_KERNEL", 1))
        self.last_layer = nn.Sequential(
            nn.Conv2d(width, width, 1),
            nn.BatchNorm2d(width, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, num_classes, kernel, padding=1 if kernel == 3 else 0),
        )
        init_weights(self)
        self.refine = refinement(num_classes, refine_channels, align_corners)  # after init_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.last_layer(self.concat_features(x))
        return out if self.refine is None else self.refine(x, out)


def build_seg_hrnet(cfg) -> SegHRNet:
    """`seg_hrnet` from a config."""
    return SegHRNet(cfg.MODEL.EXTRA, cfg.DATASET.NUM_CLASSES, cfg.MODEL.ALIGN_CORNERS,
                    refine_channels=int(cfg.MODEL.REFINE_CHANNELS))

"""HRNetV2 + Object-Contextual Representations (OCR).

A coarse segmentation (the aux head) defines soft object regions; each region's feature is the
probability-weighted mean of pixel features; each pixel then attends over the region features
and the resulting context, concatenated with the pixel feature, is classified.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lib.models.hrnet import BN_MOMENTUM, HRNetBackbone, init_weights
from lib.models.refine import refinement


def bn_relu(channels: int) -> nn.Sequential:
    """BatchNorm + ReLU as one unit (its own Sequential: that nesting is in the checkpoint names)."""
    return nn.Sequential(nn.BatchNorm2d(channels, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))


class SpatialGather(nn.Module):
    """Region features: softmax over pixels of each class map, times the pixel features.

    forward: feats (N, C, H, W), probs (N, K, H, W) -> (N, C, K, 1).
    """

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        n, k = probs.shape[:2]
        probs = F.softmax(self.scale * probs.reshape(n, k, -1), dim=2)  # (N, K, HW)
        feats = feats.reshape(n, feats.shape[1], -1).permute(0, 2, 1)  # (N, HW, C)
        return torch.matmul(probs, feats).permute(0, 2, 1).unsqueeze(3)


class ObjectAttentionBlock(nn.Module):
    """Pixel-to-region attention: queries from pixels, keys and values from region features.

    forward: x (N, C, H, W), proxy (N, C, K, 1) -> context (N, C, H, W).
    """

    def __init__(self, in_channels: int, key_channels: int, scale: int = 1,
                 align_corners: bool = True):
        super().__init__()
        self.scale = scale
        self.key_channels = key_channels
        self.align_corners = align_corners
        self.pool = nn.MaxPool2d(kernel_size=(scale, scale))
        self.f_pixel = self._project(in_channels, key_channels, depth=2)
        self.f_object = self._project(in_channels, key_channels, depth=2)
        self.f_down = self._project(in_channels, key_channels, depth=1)
        self.f_up = self._project(key_channels, in_channels, depth=1)

    @staticmethod
    def _project(cin: int, cout: int, depth: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for d in range(depth):
            layers += [nn.Conv2d(cin if d == 0 else cout, cout, 1, bias=False), bn_relu(cout)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.scale > 1:
            x = self.pool(x)
        query = self.f_pixel(x).reshape(n, self.key_channels, -1).permute(0, 2, 1)  # (N, HW, Ck)
        key = self.f_object(proxy).reshape(n, self.key_channels, -1)  # (N, Ck, K)
        value = self.f_down(proxy).reshape(n, self.key_channels, -1).permute(0, 2, 1)  # (N, K, Ck)
        if query.dtype == torch.float16:
            # fp16 (autocast or a half model): the official order (product, then 1/sqrt(Ck))
            # overflows to inf and softmax gives NaN; the product is taken in fp32 instead.
            # fp32 and bf16 keep the official computation exactly.
            with torch.autocast(query.device.type, enabled=False):
                logits = torch.matmul(query.float(), key.float())
        else:
            logits = torch.matmul(query, key)
        sim = F.softmax((self.key_channels**-0.5) * logits, dim=-1).to(value.dtype)
        context = torch.matmul(sim, value).permute(0, 2, 1).contiguous()
        context = self.f_up(context.reshape(n, self.key_channels, *x.shape[2:]))
        if self.scale > 1:
            context = F.interpolate(context, size=(h, w), mode="bilinear",
                                    align_corners=self.align_corners)
        return context


class SpatialOCR(nn.Module):
    """Object context + pixel feature, fused by a 1x1 conv, BN/ReLU and dropout.

    forward: feats (N, C, H, W), proxy (N, C, K, 1) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, key_channels: int, out_channels: int, scale: int = 1,
                 dropout: float = 0.05, align_corners: bool = True):
        super().__init__()
        self.object_context_block = ObjectAttentionBlock(in_channels, key_channels, scale,
                                                         align_corners)
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(2 * in_channels, out_channels, 1, bias=False),
            bn_relu(out_channels),
            nn.Dropout2d(dropout),
        )

    def forward(self, feats: torch.Tensor, proxy: torch.Tensor) -> torch.Tensor:
        context = self.object_context_block(feats, proxy)
        return self.conv_bn_dropout(torch.cat([context, feats], 1))


class SegHRNetOCR(HRNetBackbone):
    """HRNetV2 + OCR. forward: (N, 3, H, W) -> [aux, out], each (N, num_classes, H/4, W/4).

    With `refine_channels` > 0 (ours, off in the official configs) `out` is refined to the full
    input resolution (N, num_classes, H, W) by `FullResolutionRefine`; `aux` stays at H/4.
    """

    def __init__(self, extra, num_classes: int, mid_channels: int = 512, key_channels: int = 256,
                 dropout: float = 0.05, scale: int = 1, align_corners: bool = True,
                 refine_channels: int = 0):
        super().__init__(extra, align_corners)
        width = sum(self.out_channels)
        self.conv3x3_ocr = nn.Sequential(
            nn.Conv2d(width, mid_channels, 3, padding=1),
            nn.BatchNorm2d(mid_channels, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )
        self.ocr_gather_head = SpatialGather()
        self.ocr_distri_head = SpatialOCR(mid_channels, key_channels, mid_channels, scale,
                                          dropout, align_corners)
        self.cls_head = nn.Conv2d(mid_channels, num_classes, 1)
        self.aux_head = nn.Sequential(
            nn.Conv2d(width, width, 1),
            nn.BatchNorm2d(width, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, num_classes, 1),
        )
        init_weights(self)
        self.refine = refinement(num_classes, refine_channels, align_corners)  # after init_weights

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.concat_features(x)
        aux = self.aux_head(feats)
        feats = self.conv3x3_ocr(feats)
        context = self.ocr_gather_head(feats, aux)
        out = self.cls_head(self.ocr_distri_head(feats, context))
        if self.refine is not None:
            out = self.refine(x, out)
        return [aux, out]


def build_seg_hrnet_ocr(cfg) -> SegHRNetOCR:
    """`seg_hrnet_ocr` from a config (MODEL.OCR widths, dropout and scale)."""
    ocr = cfg.MODEL.OCR
    return SegHRNetOCR(cfg.MODEL.EXTRA, cfg.DATASET.NUM_CLASSES, ocr.MID_CHANNELS,
                       ocr.KEY_CHANNELS, ocr.DROPOUT, int(ocr.SCALE), cfg.MODEL.ALIGN_CORNERS,
                       refine_channels=int(cfg.MODEL.REFINE_CHANNELS))

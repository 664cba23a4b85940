"""OCR attention under fp16: the official order (product, then 1/sqrt(C)) overflows; ours does
not, and fp32 stays the official computation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lib.models.seg_hrnet_ocr import ObjectAttentionBlock


def _large_block() -> ObjectAttentionBlock:
    block = ObjectAttentionBlock(16, 8).eval()
    for m in block.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.constant_(m.weight, 1.0)  # dot products of queries and keys > 65504
    return block


def test_fp16_attention_logits_do_not_overflow():
    block = _large_block()
    x, proxy = torch.rand(1, 16, 6, 6) * 30, torch.rand(1, 16, 3, 1) * 30
    with torch.no_grad():
        query = block.f_pixel(x.half().float()).reshape(1, 8, -1).permute(0, 2, 1)
        key = block.f_object(proxy).reshape(1, 8, -1)
        assert torch.matmul(query, key).max() > 65504  # fp16 would overflow here
        with torch.autocast("cpu", dtype=torch.float16):
            out = block(x, proxy)
        assert out.dtype == torch.float16 and torch.isfinite(out).all()
        half = _large_block().half()
        assert torch.isfinite(half(x.half(), proxy.half())).all()


def test_fp32_attention_is_the_official_computation():
    torch.manual_seed(0)
    block = ObjectAttentionBlock(16, 8).eval()
    x, proxy = torch.randn(2, 16, 5, 7), torch.randn(2, 16, 3, 1)
    with torch.no_grad():
        out = block(x, proxy)
        query = block.f_pixel(x).reshape(2, 8, -1).permute(0, 2, 1)
        key = block.f_object(proxy).reshape(2, 8, -1)
        value = block.f_down(proxy).reshape(2, 8, -1).permute(0, 2, 1)
        sim = F.softmax((8**-0.5) * torch.matmul(query, key), dim=-1)  # the official order
        context = torch.matmul(sim, value).permute(0, 2, 1).contiguous()
        official = block.f_up(context.reshape(2, 8, 5, 7))
    assert torch.equal(out, official)

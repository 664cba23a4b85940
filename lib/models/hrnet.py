"""HRNetV2 backbone: parallel multi-resolution branches with repeated fusion.

Built from the declarative `MODEL.EXTRA` description (STAGE1..STAGE4). Attribute names
(`conv1`, `layer1`, `transition1`, `stage2`, `branches`, `fuse_layers`, ...) are the official
ones, because they are the checkpoint format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_MOMENTUM = 0.1


class _DenseGrad(torch.autograd.Function):
    """Identity whose backward hands on the gradient dense in the channels_last layout.

    The gradient of `torch.cat` is a channel slice of the concatenation's gradient, which is
    not contiguous in any layout; `upsample_bilinear2d_backward` then converts it to NCHW and
    runs its NCHW kernel, 4-6x slower on the CPU than the channels_last one. The values are
    untouched, only their layout.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def dense_grad(x: torch.Tensor) -> torch.Tensor:
    """`x`, with its gradient made dense channels_last when `x` is a channels_last training tensor."""
    if (x.requires_grad and torch.is_grad_enabled() and x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.jit.is_tracing() and not torch.jit.is_scripting()
            and not torch.compiler.is_compiling()):
        return _DenseGrad.apply(x)
    return x


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ ReLU): the unit of transitions and fuse layers."""
    layers = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout, momentum=BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a residual connection."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


BLOCKS = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def make_layer(block: type, inplanes: int, planes: int, num_blocks: int, stride: int = 1) -> nn.Sequential:
    """A chain of `num_blocks` residual blocks; the first projects the input when needed."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class StageSpec:
    """One stage of `MODEL.EXTRA`, validated."""

    num_modules: int
    num_branches: int
    block: type
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]

    @classmethod
    def parse(cls, extra: Mapping, name: str) -> StageSpec:
        where = f"MODEL.EXTRA.{name}"
        if name not in extra:
            raise ValueError(f"{where} is missing from the config")
        stage = extra[name]
        for key in ("NUM_MODULES", "BLOCK", "NUM_BLOCKS", "NUM_CHANNELS"):
            if key not in stage:
                raise ValueError(f"{where}.{key} is missing from the config")
        block = str(stage["BLOCK"]).upper()
        if block not in BLOCKS:
            raise ValueError(f"{where}.BLOCK is {stage['BLOCK']!r}; known: {sorted(BLOCKS)}")
        # The official files spell it NUM_RANCHES in STAGE1; both spellings mean the same.
        branches = stage.get("NUM_BRANCHES", stage.get("NUM_RANCHES", len(stage["NUM_CHANNELS"])))
        spec = cls(
            num_modules=int(stage["NUM_MODULES"]),
            num_branches=int(branches),
            block=BLOCKS[block],
            num_blocks=tuple(int(b) for b in stage["NUM_BLOCKS"]),
            num_channels=tuple(int(c) for c in stage["NUM_CHANNELS"]),
        )
        if stage.get("FUSE_METHOD", "SUM") != "SUM":
            raise ValueError(f"{where}.FUSE_METHOD is {stage['FUSE_METHOD']!r}; only SUM exists")
        for key, values in (("NUM_BLOCKS", spec.num_blocks), ("NUM_CHANNELS", spec.num_channels)):
            if len(values) != spec.num_branches:
                raise ValueError(
                    f"{where}.{key} has {len(values)} entries but the stage has {spec.num_branches} branches"
                )
        return spec


class HighResolutionModule(nn.Module):
    """Parallel branches followed by an exchange unit that fuses every branch into every other."""

    def __init__(self, spec: StageSpec, in_channels: Sequence[int], multi_scale_output: bool = True,
                 align_corners: bool = True):
        super().__init__()
        self.num_branches = spec.num_branches
        self.align_corners = align_corners
        block = spec.block
        self.branches = nn.ModuleList(
            make_layer(block, in_channels[i], spec.num_channels[i], spec.num_blocks[i])
            for i in range(self.num_branches)
        )
        self.out_channels = [c * block.expansion for c in spec.num_channels]
        self.fuse_layers = self._make_fuse_layers(multi_scale_output) if self.num_branches > 1 else None
        self.relu = nn.ReLU(inplace=True)

    def _make_fuse_layers(self, multi_scale_output: bool) -> nn.ModuleList:
        ch = self.out_channels
        fuse_layers = []
        for i in range(self.num_branches if multi_scale_output else 1):
            row: list[nn.Module | None] = []
            for j in range(self.num_branches):
                if j > i:  # lower resolution: 1x1 projection, upsampled in forward
                    row.append(conv_bn(ch[j], ch[i], 1, relu=False))
                elif j == i:
                    row.append(None)
                else:  # higher resolution: (i - j) strided 3x3 convs, channels change at the last
                    steps = [conv_bn(ch[j], ch[j], 3, 2) for _ in range(i - j - 1)]
                    steps.append(conv_bn(ch[j], ch[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        return nn.ModuleList(fuse_layers)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [branch(xi) for branch, xi in zip(self.branches, x)]
        if self.fuse_layers is None:
            return x
        fused = []
        for i, row in enumerate(self.fuse_layers):
            y = x[0] if i == 0 else row[0](x[0])
            for j in range(1, self.num_branches):
                if j == i:
                    y = y + x[j]
                elif j > i:
                    y = y + F.interpolate(row[j](x[j]), size=x[i].shape[-2:], mode="bilinear",
                                          align_corners=self.align_corners)
                else:
                    y = y + row[j](x[j])
            fused.append(self.relu(y))
        return fused


class HRNetBackbone(nn.Module):
    """HRNetV2 trunk: stem (two stride-2 convs), layer1, then stages 2-4 with transitions.

    forward: (N, 3, H, W) -> list of 4 tensors, branch k at stride 4 * 2**k.
    """

    def __init__(self, extra: Mapping, align_corners: bool = True):
        super().__init__()
        self.align_corners = align_corners
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)

        stage1 = StageSpec.parse(extra, "STAGE1")
        self.layer1 = make_layer(stage1.block, 64, stage1.num_channels[0], stage1.num_blocks[0])
        channels = [stage1.block.expansion * stage1.num_channels[0]]

        self.stage_specs = [StageSpec.parse(extra, f"STAGE{k}") for k in (2, 3, 4)]
        for k, spec in enumerate(self.stage_specs, start=2):
            wanted = [c * spec.block.expansion for c in spec.num_channels]
            setattr(self, f"transition{k - 1}", self._make_transition(channels, wanted))
            stage, channels = self._make_stage(spec, wanted)
            setattr(self, f"stage{k}", stage)
        self.out_channels = channels

    @staticmethod
    def _make_transition(pre: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
        """Adapt existing branches' widths and create new, lower-resolution branches."""
        layers: list[nn.Module | None] = []
        for i, c in enumerate(cur):
            if i < len(pre):
                layers.append(conv_bn(pre[i], c, 3) if pre[i] != c else None)
            else:
                steps = [conv_bn(pre[-1], pre[-1], 3, 2) for _ in range(i - len(pre))]
                steps.append(conv_bn(pre[-1], c, 3, 2))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def _make_stage(self, spec: StageSpec, in_channels: list[int]) -> tuple[nn.Sequential, list[int]]:
        modules = []
        for _ in range(spec.num_modules):
            module = HighResolutionModule(spec, in_channels, True, self.align_corners)
            modules.append(module)
            in_channels = module.out_channels
        return nn.Sequential(*modules), in_channels

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        feats = [self.layer1(x)]
        for k in (2, 3, 4):
            transition = getattr(self, f"transition{k - 1}")
            branches = []
            for i, layer in enumerate(transition):
                src = feats[min(i, len(feats) - 1)]  # new branches grow from the lowest resolution
                branches.append(src if layer is None else layer(src))
            feats = getattr(self, f"stage{k}")(branches)
        return feats

    def concat_features(self, x: torch.Tensor) -> torch.Tensor:
        """All four branches upsampled to stride 4 and concatenated: (N, sum(C), H/4, W/4)."""
        feats = self.forward_features(x)
        size = feats[0].shape[-2:]
        ups = [dense_grad(F.interpolate(f, size=size, mode="bilinear", align_corners=self.align_corners))
               for f in feats[1:]]
        return torch.cat([feats[0], *ups], 1)


def init_weights(model: nn.Module) -> None:
    """The official initialisation: conv weights N(0, 0.001), BatchNorm weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.001)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)

"""CIFAR-style ResNets built from BasicBlocks (He et al. 2016): resnet_cifar(depth=6n+2) and ResNet-18.

`norm` selects BatchNorm ("batch"), a layer norm over (C, H, W) implemented as GroupNorm with one group
("layer"), or no normalization ("none"). Without normalization each residual branch is multiplied by a
learnable scalar initialised to zero (SkipInit, De & Smith 2020), so every block starts as the identity
and deep un-normalized nets still train; this is the setting of Orabona's Adam+L2 / AdamW / AdamProx
comparison.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from optprobe.errors import OptprobeError

NORMS = ("batch", "layer", "none")


def make_norm(norm: str, channels: int) -> nn.Module:
    """Normalization layer for `channels` feature maps (Identity for norm="none")."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    if norm == "none":
        return nn.Identity()
    raise OptprobeError(f"unknown norm {norm!r}; choose one of {NORMS}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=bias)
        self.norm1 = make_norm(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=bias)
        self.norm2 = make_norm(norm, out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=bias), make_norm(norm, out_channels)
            )
        # SkipInit: the residual branch is scaled by a learnable scalar starting at 0 when un-normalized.
        self.branch_scale = nn.Parameter(torch.zeros(())) if norm == "none" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return act(shortcut(x) + branch(x))."""
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        if self.branch_scale is not None:
            out = self.branch_scale * out
        return F.relu(self.shortcut(x) + out)


class ResNet(nn.Module):
    """3x3 stem, stages of BasicBlocks (stride 2 at each new stage), global average pool, linear head."""

    def __init__(
        self,
        blocks_per_stage: Sequence[int],
        widths: Sequence[int],
        num_classes: int = 10,
        in_channels: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if len(blocks_per_stage) != len(widths):
            raise OptprobeError("blocks_per_stage and widths must have the same length")
        bias = norm == "none"
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=bias), make_norm(norm, widths[0]), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        prev = widths[0]
        for stage, (n_blocks, width) in enumerate(zip(blocks_per_stage, widths, strict=True)):
            for i in range(n_blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(prev, width, stride, norm))
                prev = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, H, W) images to (B, num_classes) logits."""
        out = self.blocks(self.stem(x))
        return self.head(out.mean(dim=(2, 3)))


def resnet_cifar(
    depth: int = 20, num_classes: int = 10, in_channels: int = 3, norm: str = "batch", width: int = 16
) -> ResNet:
    """CIFAR ResNet of depth 6n+2 (8, 14, 20, 32, 56...): three stages of n blocks, widths w, 2w, 4w."""
    if depth < 8 or (depth - 2) % 6:
        raise OptprobeError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32...), got {depth}")
    n = (depth - 2) // 6
    return ResNet([n, n, n], [width, 2 * width, 4 * width], num_classes, in_channels, norm)


def resnet18(num_classes: int = 10, in_channels: int = 3, norm: str = "batch") -> ResNet:
    """ResNet-18 (four stages of two BasicBlocks, widths 64-512) with the CIFAR 3x3 stem: ~11M parameters."""
    return ResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes, in_channels, norm)

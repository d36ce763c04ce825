"""Small convolutional networks: a 2-D CNN for 8x8 / 28x28 / 32x32 images and a 1-D CNN for MNIST-1D."""

from collections.abc import Sequence

import torch
from torch import nn

from optprobe.experiments.models.mlp import make_activation


class SmallCNN(nn.Module):
    """[Conv3x3 -> act -> MaxPool2] per entry of `channels`, then a linear classifier.

    Works for any square `image_size` divisible by 2**len(channels) (8 with two stages, 28, 32).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 8,
        channels: Sequence[int] = (16, 32),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            layers += [nn.Conv2d(prev, c, 3, padding=1), make_activation(activation), nn.MaxPool2d(2)]
            prev = c
        side = image_size // 2 ** len(channels)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, H, W) images to (B, num_classes) logits."""
        return self.classifier(self.features(x).flatten(1))


class CNN1D(nn.Module):
    """1-D CNN for MNIST-1D style signals of shape (B, length) or (B, 1, length)."""

    def __init__(
        self,
        length: int = 40,
        num_classes: int = 10,
        channels: Sequence[int] = (32, 32),
        kernel_size: int = 5,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 1
        for c in channels:
            layers += [nn.Conv1d(prev, c, kernel_size, padding=kernel_size // 2), make_activation(activation)]
            layers.append(nn.MaxPool1d(2))
            prev = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev * (length // 2 ** len(channels)), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, length) or (B, 1, length) signals to (B, num_classes) logits."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x).flatten(1))

"""Multi-layer perceptron with configurable hidden widths, activation and dropout."""

from collections.abc import Sequence

import torch
from torch import nn

from optprobe.errors import OptprobeError

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module for `name` (relu, tanh or gelu)."""
    if name not in ACTIVATIONS:
        raise OptprobeError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Module):
    """Fully connected network: flatten -> [Linear -> act -> dropout] * len(widths) -> Linear.

    Inputs of any shape (B, ...) are flattened to (B, in_features).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        widths: Sequence[int] = (128, 128),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for width in widths:
            layers += [nn.Linear(prev, width), make_activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = width
        layers.append(nn.Linear(prev, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, ...) inputs to (B, out_features) outputs."""
        return self.net(x)

"""Small vision tasks: MLPs, CNNs and ResNets on scikit-learn digits and MNIST-1D."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from optprobe.errors import OptprobeError
from optprobe.experiments.data.mnist1d import load_mnist1d
from optprobe.experiments.data.sklearn_data import load_sklearn
from optprobe.experiments.models.cnn import CNN1D, SmallCNN
from optprobe.experiments.models.mlp import MLP
from optprobe.experiments.models.resnet import resnet_cifar
from optprobe.experiments.tasks.losses import cross_entropy_loss, onehot_squared_loss
from optprobe.experiments.tasks.registry import LossFn, Task, make_task, register


@register
def mlp_digits(
    widths: tuple[int, ...] = (128, 128),
    activation: str = "relu",
    dropout: float = 0.0,
    seed: int = 0,
    batch_size: int = 64,
) -> Task:
    """MLP classifier on scikit-learn digits (64 standardized pixels, 10 classes), cross-entropy."""
    train, eval = load_sklearn("digits", seed=seed)
    return make_task(
        lambda: MLP(64, 10, widths, activation, dropout),
        cross_entropy_loss,
        train,
        eval,
        batch_size,
        f"{activation} MLP {list(widths)} on digits",
    )


def _edge_of_stability_digits(
    loss: str, n_samples: int, seed: int, as_images: bool
) -> tuple[LossFn, TensorDataset, TensorDataset]:
    """(loss, train, eval) of the edge-of-stability digits tasks: the first ``n_samples`` training digits,
    and "mse" (squared error to one-hot labels) or "ce" (cross-entropy)."""
    losses = {"mse": onehot_squared_loss, "ce": cross_entropy_loss}
    if loss not in losses:
        raise OptprobeError(f"loss must be one of {sorted(losses)}, got {loss!r}")
    train, eval = load_sklearn("digits", seed=seed, as_images=as_images)
    return losses[loss], TensorDataset(*(t[:n_samples] for t in train.tensors)), eval


@register
def tanh_mlp_digits(
    widths: tuple[int, ...] = (64, 64),
    n_samples: int = 500,
    loss: str = "mse",
    seed: int = 0,
    batch_size: int | None = None,
) -> Task:
    """Small tanh MLP on a digits subset for full-batch GD at the edge of stability (Cohen et al. 2021).

    batch_size defaults to the whole training subset; loss is "mse" (on one-hot labels, as in the paper's
    cleanest plots) or "ce".
    """
    loss_fn, train, eval = _edge_of_stability_digits(loss, n_samples, seed, as_images=False)
    return make_task(
        lambda: MLP(64, 10, widths, "tanh"),
        loss_fn,
        train,
        eval,
        batch_size or len(train),
        f"tanh MLP {list(widths)} on {len(train)} digits, {loss} loss, full batch",
    )


@register
def cnn_digits(channels: tuple[int, ...] = (16, 32), seed: int = 0, batch_size: int = 64) -> Task:
    """Small CNN on scikit-learn digits as (1, 8, 8) images."""
    train, eval = load_sklearn("digits", seed=seed, as_images=True)
    return make_task(
        lambda: SmallCNN(1, 10, 8, channels),
        cross_entropy_loss,
        train,
        eval,
        batch_size,
        f"CNN {list(channels)} on 8x8 digits",
    )


@register
def tanh_cnn_digits(
    channels: tuple[int, ...] = (8, 16),
    n_samples: int = 500,
    loss: str = "mse",
    seed: int = 0,
    batch_size: int | None = None,
) -> Task:
    """Small tanh CNN on a digits subset as (1, 8, 8) images, for full-batch GD at the edge of stability
    (the CNN of Cohen et al. 2021 at laptop scale); batch_size defaults to the whole subset, loss is
    "mse" (one-hot targets) or "ce"."""
    loss_fn, train, eval = _edge_of_stability_digits(loss, n_samples, seed, as_images=True)
    return make_task(
        lambda: SmallCNN(1, 10, 8, channels, "tanh"),
        loss_fn,
        train,
        eval,
        batch_size or len(train),
        f"tanh CNN {list(channels)} on {len(train)} 8x8 digits, {loss} loss, full batch",
    )


@register
def resnet_digits(
    depth: int = 8,
    norm: str = "batch",
    width: int = 16,
    image_size: int = 8,
    seed: int = 0,
    batch_size: int = 64,
    loss_scale: float = 1.0,
) -> Task:
    """CIFAR-style ResNet (depth 6n+2) on digits, bilinearly upsampled to `image_size` (8 already works:
    the three stages see 8, 4 and 2 pixels). norm: batch, layer or none (SkipInit residual scalars).
    The loss is ``loss_scale`` × cross-entropy (c·F: every gradient times c, the rescaling a scale-free
    optimizer ignores; a power of two keeps it exact in floating point)."""
    train, eval = load_sklearn("digits", seed=seed, as_images=True)
    if image_size != 8:
        train, eval = (
            TensorDataset(F.interpolate(d.tensors[0], size=image_size, mode="bilinear"), d.tensors[1])
            for d in (train, eval)
        )
    resnet_cifar(depth, norm=norm)  # validate depth and norm now rather than at first model_fn call

    def scaled_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
        return loss_scale * cross_entropy_loss(model, batch)

    return make_task(
        lambda: resnet_cifar(depth, 10, 1, norm, width),
        cross_entropy_loss if loss_scale == 1.0 else scaled_loss,
        train,
        eval,
        batch_size,
        f"ResNet-{depth} (norm={norm}) on {image_size}x{image_size} digits"
        + (f", loss × {loss_scale:g}" if loss_scale != 1.0 else ""),
    )


@register
def mnist1d_mlp(
    num_samples: int = 2000,
    widths: tuple[int, ...] = (100, 100),
    activation: str = "relu",
    seed: int = 42,
    batch_size: int = 100,
) -> Task:
    """MLP on MNIST-1D (40-sample signals, 10 classes), generated locally."""
    train, eval = load_mnist1d(num_samples, seed)
    return make_task(
        lambda: MLP(40, 10, widths, activation),
        cross_entropy_loss,
        train,
        eval,
        batch_size,
        f"{activation} MLP {list(widths)} on MNIST-1D",
    )


@register
def mnist1d_cnn(
    num_samples: int = 2000, channels: tuple[int, ...] = (32, 32), seed: int = 42, batch_size: int = 100
) -> Task:
    """1-D CNN on MNIST-1D."""
    train, eval = load_mnist1d(num_samples, seed)
    return make_task(
        lambda: CNN1D(40, 10, channels),
        cross_entropy_loss,
        train,
        eval,
        batch_size,
        f"1-D CNN {list(channels)} on MNIST-1D",
    )

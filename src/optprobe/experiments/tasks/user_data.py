"""Tasks on the user's own data: CIFAR-10-like images and numpy arrays."""

import numpy as np
import torch
from torch.utils.data import TensorDataset

from optprobe.experiments.data import user
from optprobe.experiments.models.mlp import MLP
from optprobe.experiments.models.resnet import resnet18
from optprobe.experiments.tasks.losses import cross_entropy_loss, squared_loss
from optprobe.experiments.tasks.registry import Task, make_task, register


@register
def cifar10_resnet18(
    path: str,
    norm: str = "batch",
    max_samples: int | None = None,
    num_classes: int = 10,
    image_column: str = "img",
    label_column: str = "label",
    batch_size: int = 128,
) -> Task:
    """ResNet-18 (the full-scale option, ~11M parameters) on CIFAR-10 from a local python-format directory
    (data_batch_1..5, test_batch, batches.meta) or a datasets.save_to_disk DatasetDict (train/test splits,
    columns `image_column`, `label_column`)."""
    if user.is_hf_dataset_dir(path):
        train, eval = user.load_hf_images(path, image_column, label_column)
        train, eval = (TensorDataset(*(t[:max_samples] for t in d.tensors)) for d in (train, eval))
    else:
        train, eval = user.load_cifar10_dir(path, max_samples)
    in_channels = train.tensors[0].shape[1]
    return make_task(
        lambda: resnet18(num_classes, in_channels, norm),
        cross_entropy_loss,
        train,
        eval,
        batch_size,
        f"ResNet-18 (norm={norm}) on images from {path}",
    )


@register
def numpy_mlp(
    path: str,
    widths: tuple[int, ...] = (128, 128),
    activation: str = "relu",
    eval_fraction: float = 0.2,
    seed: int = 0,
    batch_size: int = 64,
) -> Task:
    """MLP on user arrays (.npz with x, y or a folder with x.npy, y.npy): integer y is classification
    (cross-entropy), float y regression (squared loss). x is used as given (flattened per sample)."""
    train, eval = _split(user.load_numpy(path), eval_fraction, seed)
    x, y = train.tensors
    in_features = int(np.prod(x.shape[1:]))
    if y.dtype == torch.int64:
        out, loss_fn, kind = _num_classes(train, eval), cross_entropy_loss, "classification"
    else:
        out, loss_fn, kind = int(np.prod(y.shape[1:])), squared_loss, "regression"
    return make_task(
        lambda: MLP(in_features, out, widths, activation),
        loss_fn,
        train,
        eval,
        batch_size,
        f"{activation} MLP {list(widths)} {kind} on {path}",
    )


def _split(ds: TensorDataset, eval_fraction: float, seed: int) -> tuple[TensorDataset, TensorDataset]:
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    n_eval = int(round(eval_fraction * len(ds)))
    return (
        TensorDataset(*(t[perm[n_eval:]] for t in ds.tensors)),
        TensorDataset(*(t[perm[:n_eval]] for t in ds.tensors)),
    )


def _num_classes(*datasets: TensorDataset) -> int:
    return int(max(int(ds.tensors[1].max()) for ds in datasets if len(ds))) + 1  # a split may be empty

"""scikit-learn's bundled (offline) datasets: digits (8x8 images, 10 classes), breast cancer (binary), wine.

Only the `load_*` functions are used: they read files shipped inside scikit-learn. The `fetch_*` functions
download and must not be used here. Features are standardized with the training split's statistics.
"""

import torch
from torch.utils.data import TensorDataset

from optprobe.errors import OptprobeError

SKLEARN_DATASETS = ("digits", "breast_cancer", "wine")


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Standardize every column with the mean and std of `train` (constant columns are only centred)."""
    mean, std = train.mean(0), train.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return [(t - mean) / std for t in (train, *others)]


def load_sklearn(
    name: str, eval_fraction: float = 0.2, seed: int = 0, as_images: bool = False
) -> tuple[TensorDataset, TensorDataset]:
    """Train and eval (x, y) datasets: x float32 standardized, y int64 class labels.

    The split is a seeded random permutation. `as_images=True` (digits only) returns x as (N, 1, 8, 8).
    """
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise OptprobeError("scikit-learn datasets need scikit-learn: pip install scikit-learn") from exc
    if name not in SKLEARN_DATASETS:
        raise OptprobeError(f"unknown scikit-learn dataset {name!r}; choose one of {SKLEARN_DATASETS}")
    if as_images and name != "digits":
        raise OptprobeError("as_images=True is only meaningful for the digits dataset")
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X, y = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_eval = int(round(eval_fraction * len(y)))
    eval_idx, train_idx = perm[:n_eval], perm[n_eval:]
    x_train, x_eval = standardize(X[train_idx], X[eval_idx])
    if as_images:
        x_train, x_eval = x_train.view(-1, 1, 8, 8), x_eval.view(-1, 1, 8, 8)
    return TensorDataset(x_train, y[train_idx]), TensorDataset(x_eval, y[eval_idx])

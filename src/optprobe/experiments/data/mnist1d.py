"""MNIST-1D (Greydanus 2020): 40-sample 1-D signals of 10 digit templates, generated locally.

`mnist1d.data.make_dataset` synthesises the data from templates on the CPU in about a second for a few
thousand samples; `mnist1d.data.get_dataset` is never called because it downloads a pickle.
"""

import torch
from torch.utils.data import TensorDataset

from optprobe.errors import OptprobeError


def load_mnist1d(num_samples: int = 2000, seed: int = 42) -> tuple[TensorDataset, TensorDataset]:
    """Train and eval (x, y) datasets: x float32 (N, 40), y int64 in 0..9; 80/20 split by mnist1d."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise OptprobeError("MNIST-1D needs the mnist1d package: pip install mnist1d") from exc
    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    data = make_dataset(args)

    def tensors(x_key: str, y_key: str) -> TensorDataset:
        x = torch.as_tensor(data[x_key], dtype=torch.float32)
        return TensorDataset(x, torch.as_tensor(data[y_key], dtype=torch.int64))

    return tensors("x", "y"), tensors("x_test", "y_test")

"""User data on disk: CIFAR-10 python pickles, `datasets.save_to_disk` folders, text folders, numpy arrays.

Every loader checks the path and format first and raises an OptprobeError that names the files it
expected. Nothing is downloaded.
"""

import importlib
import pickle
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch.utils.data import TensorDataset

from optprobe.errors import OptprobeError

CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = (*CIFAR_TRAIN_FILES, "test_batch", "batches.meta")
HF_MARKERS = ("dataset_dict.json", "state.json")


def _existing_dir(path: str | Path, what: str, expected: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise OptprobeError(f"{what}: {p} is not a directory; expected a directory containing {expected}")
    return p


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")  # noqa: S301 - the user's own CIFAR files
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise OptprobeError(
            f"{path} is not a CIFAR-10 python batch: expected a pickled dict with b'data' (N x 3072 uint8) "
            f"and b'labels' (N ints) ({type(exc).__name__}: {exc})"
        ) from exc
    if len(data) != len(labels):
        raise OptprobeError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def load_cifar10_dir(path: str | Path, max_samples: int | None = None) -> tuple[TensorDataset, TensorDataset]:
    """Train and test (x, y) from a CIFAR-10 python-format directory (`cifar-10-batches-py`).

    x is float32 (N, 3, 32, 32) normalised per channel with the training set's statistics, y int64.
    `max_samples` keeps the first images of each split. The files are pickles: load only files you trust.
    """
    expected = ", ".join(CIFAR_FILES)
    root = _existing_dir(path, "CIFAR-10", expected)
    missing = [name for name in CIFAR_FILES if not (root / name).is_file()]
    if missing:
        raise OptprobeError(f"CIFAR-10 directory {root} lacks {', '.join(missing)}; expected {expected}")
    train = [_read_cifar_batch(root / name) for name in CIFAR_TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in train])[:max_samples]
    y_train = np.concatenate([y for _, y in train])[:max_samples]
    x_test, y_test = (a[:max_samples] for a in _read_cifar_batch(root / "test_batch"))
    return images_to_datasets(x_train, y_train, x_test, y_test)


def images_to_datasets(
    x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray
) -> tuple[TensorDataset, TensorDataset]:
    """uint8 (N, C, H, W) images -> float datasets normalised per channel with the train statistics."""
    xt = torch.as_tensor(x_train, dtype=torch.float32) / 255
    xe = torch.as_tensor(x_eval, dtype=torch.float32) / 255
    mean, std = xt.mean(dim=(0, 2, 3), keepdim=True), xt.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (
        TensorDataset((xt - mean) / std, torch.as_tensor(y_train, dtype=torch.int64)),
        TensorDataset((xe - mean) / std, torch.as_tensor(y_eval, dtype=torch.int64)),
    )


def import_datasets() -> ModuleType:
    """Import Hugging Face `datasets` or raise an OptprobeError with the install command."""
    try:
        return importlib.import_module("datasets")
    except ImportError as exc:
        raise OptprobeError("Hugging Face datasets on disk need the package: pip install datasets") from exc


def is_hf_dataset_dir(path: str | Path) -> bool:
    """Whether `path` looks like a `save_to_disk` folder (a Dataset or a DatasetDict)."""
    return any((Path(path) / marker).is_file() for marker in HF_MARKERS)


def load_hf_split(path: str | Path, split: str) -> "object":
    """The `datasets.Dataset` saved at `path` (for a DatasetDict: its `split`)."""
    root = _existing_dir(path, "Hugging Face dataset", f"one of {', '.join(HF_MARKERS)}")
    if not is_hf_dataset_dir(root):
        raise OptprobeError(
            f"{root} is not a datasets.save_to_disk folder: expected {' or '.join(HF_MARKERS)} in it"
        )
    ds = import_datasets().load_from_disk(str(root))
    if hasattr(ds, "keys"):
        if split not in ds:
            raise OptprobeError(f"{root} has splits {sorted(ds.keys())}, not {split!r}")
        ds = ds[split]
    return ds


def _column(ds: "object", name: str, root: str | Path) -> list:
    if name not in ds.column_names:
        raise OptprobeError(f"{root}: no column {name!r}; columns are {ds.column_names}")
    return ds[name]


def load_hf_images(
    path: str | Path,
    image_column: str = "image",
    label_column: str = "label",
    train_split: str = "train",
    eval_split: str = "test",
) -> tuple[TensorDataset, TensorDataset]:
    """Image classification from a saved DatasetDict: images (PIL or arrays, HWC or HW) -> normalised
    float (N, C, H, W), labels int64. All images must share one size."""

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
        ds = load_hf_split(path, split)
        images = np.stack([np.asarray(im, dtype=np.uint8) for im in _column(ds, image_column, path)])
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        return images, np.asarray(_column(ds, label_column, path), dtype=np.int64)

    return images_to_datasets(*arrays(train_split), *arrays(eval_split))


def load_hf_text(path: str | Path, text_column: str = "text", split: str = "train") -> torch.Tensor:
    """The `text_column` of a saved dataset, UTF-8 encoded and joined by newlines, as a uint8 tensor."""
    texts = _column(load_hf_split(path, split), text_column, path)
    data = "\n".join(texts).encode("utf-8")
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


def load_text_folder(path: str | Path, max_bytes: int | None = None) -> torch.Tensor:
    """All *.txt files of a folder (sorted by name, recursively) concatenated, as a uint8 byte tensor."""
    from optprobe.experiments.data.text import read_corpus

    root = _existing_dir(path, "text folder", "*.txt files")
    files = sorted(root.rglob("*.txt"))
    if not files:
        raise OptprobeError(f"text folder {root} has no *.txt files (searched {root}/**/*.txt)")
    return read_corpus(files, max_bytes)


def load_numpy(path: str | Path) -> TensorDataset:
    """(x, y) from an .npz with arrays `x` and `y`, or from a folder with x.npy and y.npy.

    x becomes float32; y int64 when integer-valued (classification) else float32 (regression).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        files = [p / "x.npy", p / "y.npy"]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise OptprobeError(f"numpy folder {p} lacks {', '.join(missing)}; expected x.npy and y.npy")
        x, y = (np.load(f, allow_pickle=False) for f in files)
    elif p.is_file() and p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as arrays:
            if not {"x", "y"} <= set(arrays.files):
                raise OptprobeError(f"{p} has arrays {arrays.files}; expected arrays named 'x' and 'y'")
            x, y = arrays["x"], arrays["y"]
    else:
        raise OptprobeError(f"{p} is neither an .npz file (arrays x, y) nor a folder with x.npy and y.npy")
    if len(x) != len(y):
        raise OptprobeError(f"{p}: x has {len(x)} rows but y has {len(y)}")
    y_dtype = torch.int64 if np.issubdtype(y.dtype, np.integer) else torch.float32
    return TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=y_dtype))

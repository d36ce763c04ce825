"""User data formats: tiny fake files load; missing paths and wrong formats give helpful OptprobeErrors."""

import importlib.util
import pickle

import numpy as np
import pytest
import torch

from optprobe.errors import OptprobeError
from optprobe.experiments.data import user

HAS_DATASETS = importlib.util.find_spec("datasets") is not None


def write_cifar(root, per_batch=4):
    """A CIFAR-10 python-format directory with 5 x per_batch training and per_batch test images."""
    rng = np.random.default_rng(0)
    root.mkdir(exist_ok=True)
    for name in user.CIFAR_FILES[:-1]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
        }
        (root / name).write_bytes(pickle.dumps(batch))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}))
    return root


def test_cifar_dir_loads(tmp_path, offline):
    train, test = user.load_cifar10_dir(write_cifar(tmp_path / "cifar"))
    x, y = train.tensors
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(test) == 4
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert len(user.load_cifar10_dir(tmp_path / "cifar", max_samples=7)[0]) == 7


def test_cifar_errors_list_expected_files(tmp_path):
    with pytest.raises(OptprobeError, match="not a directory.*data_batch_1.*batches.meta"):
        user.load_cifar10_dir(tmp_path / "nowhere")
    root = write_cifar(tmp_path / "cifar")
    (root / "data_batch_3").unlink()
    with pytest.raises(OptprobeError, match="lacks data_batch_3"):
        user.load_cifar10_dir(root)
    (root / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(OptprobeError, match="data_batch_3 is not a CIFAR-10 python batch.*b'labels'"):
        user.load_cifar10_dir(root)
    (root / "data_batch_3").write_bytes(pickle.dumps({"images": []}))
    with pytest.raises(OptprobeError, match="b'data'"):
        user.load_cifar10_dir(root)


def test_text_folder(tmp_path, offline):
    (tmp_path / "b.txt").write_text("world")
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "skip.md").write_text("ignored")
    data = user.load_text_folder(tmp_path)
    assert data.dtype == torch.uint8 and bytes(data.tolist()) == b"hello\n\nworld\n\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OptprobeError, match=r"no \*\.txt files"):
        user.load_text_folder(empty)
    with pytest.raises(OptprobeError, match="not a directory"):
        user.load_text_folder(tmp_path / "a.txt")


def test_numpy_npz_and_npy_folder(tmp_path, offline):
    x, y = np.random.default_rng(0).normal(size=(12, 3)), np.arange(12) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = user.load_numpy(tmp_path / "d.npz")
    assert ds.tensors[0].dtype == torch.float32 and ds.tensors[1].dtype == torch.int64
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", x[:, 0])
    assert user.load_numpy(folder).tensors[1].dtype == torch.float32


def test_numpy_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", features=np.zeros((2, 2)))
    with pytest.raises(OptprobeError, match="expected arrays named 'x' and 'y'"):
        user.load_numpy(tmp_path / "bad.npz")
    with pytest.raises(OptprobeError, match=r"x\.npy and y\.npy"):
        user.load_numpy(tmp_path)
    with pytest.raises(OptprobeError, match=r"neither an \.npz file"):
        user.load_numpy(tmp_path / "missing.npz")
    np.savez(tmp_path / "ragged.npz", x=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(OptprobeError, match="3 rows but y has 2"):
        user.load_numpy(tmp_path / "ragged.npz")


def test_hf_dir_errors(tmp_path):
    with pytest.raises(OptprobeError, match="dataset_dict.json or state.json"):
        user.load_hf_text(tmp_path)


@pytest.mark.skipif(not HAS_DATASETS, reason="datasets not installed (pip install datasets)")
def test_hf_saved_datasets(tmp_path, offline):
    import datasets

    rng = np.random.default_rng(0)
    images = {
        split: datasets.Dataset.from_dict(
            {
                "img": [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(n)],
                "label": list(range(n)),
            }
        )
        for split, n in (("train", 6), ("test", 2))
    }
    datasets.DatasetDict(images).save_to_disk(str(tmp_path / "images"))
    train, test = user.load_hf_images(tmp_path / "images", "img", "label")
    assert train.tensors[0].shape == (6, 3, 8, 8) and test.tensors[1].tolist() == [0, 1]
    with pytest.raises(OptprobeError, match="no column 'image'"):
        user.load_hf_images(tmp_path / "images", "image", "label")
    datasets.Dataset.from_dict({"text": ["to be", "or not"]}).save_to_disk(str(tmp_path / "text"))
    assert bytes(user.load_hf_text(tmp_path / "text").tolist()) == b"to be\nor not"


def test_missing_datasets_package_names_pip_install(monkeypatch):
    def missing(name):
        raise ImportError(name)

    monkeypatch.setattr(user.importlib, "import_module", missing)
    with pytest.raises(OptprobeError, match="pip install datasets"):
        user.import_datasets()

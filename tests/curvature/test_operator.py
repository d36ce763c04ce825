"""Operators as SciPy LinearOperators and with ``@``: eigsh on them agrees with Lanczos and the exact H."""

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import eigsh

from optprobe.curvature import CurvatureOperator, GGNOperator, as_linear_operator, sharpness
from optprobe.evaluation import Evaluator, trained_parameters

from .conftest import make_case
from .test_ggn import _setup, exact_ggn


@pytest.mark.parametrize("name", ["quadratic", "mlp", "cnn"])
def test_eigsh_on_the_hessian_operator_matches_lanczos_and_exact(name):
    case = make_case(name)
    op = case.operator()
    exact = torch.linalg.eigvalsh(case.hessian())
    top = eigsh(op.to_scipy(), k=1, which="LA", tol=1e-12, v0=np.ones(op.dim))[0][0]
    ours = sharpness(op, tol=1e-10).top[0]
    assert top == pytest.approx(float(exact[-1]), rel=1e-9)
    assert ours == pytest.approx(top, rel=1e-8)
    bottom = eigsh(as_linear_operator(op), k=1, which="SA", tol=1e-12, v0=np.ones(op.dim))[0][0]
    assert bottom == pytest.approx(float(exact[0]), rel=1e-9, abs=1e-12)


def test_eigsh_on_the_ggn_operator_matches_lanczos_and_exact():
    model, batch, split = _setup("ce")
    evaluator = Evaluator(model, split)
    op = GGNOperator(evaluator, trained_parameters(model), batch)
    exact = torch.linalg.eigvalsh(exact_ggn(evaluator, split, batch))
    top = eigsh(op.to_scipy(), k=2, which="LA", tol=1e-12, v0=np.ones(op.dim))[0]
    np.testing.assert_allclose(np.sort(top), exact[-2:].numpy(), rtol=1e-9)
    assert sharpness(op, tol=1e-10).top[0] == pytest.approx(float(exact[-1]), rel=1e-8)


def test_matmul_multiplies_vectors_and_matrix_columns():
    case = make_case("mlp")
    op = case.operator()
    assert isinstance(op, CurvatureOperator)
    h = case.hessian()
    m = torch.randn(op.dim, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op @ m, h @ m, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op @ m[:, 0], h @ m[:, 0], rtol=1e-10, atol=1e-12)
    dense = op.to_scipy() @ m.numpy()
    np.testing.assert_allclose(dense, (h @ m).numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        op @ torch.zeros(2, 2, 2, dtype=torch.float64)

import pytest
import torch
from torch import nn

from optprobe.curvature import HessianOperator, hessian_rows, hutchinson_diagonal
from optprobe.evaluation import Evaluator, trained_parameters

backpack = pytest.importorskip("backpack")


def test_hutchinson_exact_and_backpack_diagonals_agree():
    from backpack.extensions import DiagHessian

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    lossfunc = nn.MSELoss()
    ev = Evaluator(model, lambda m, b: lossfunc(m(b[0]), b[1]))
    op = HessianOperator(ev, trained_parameters(model), (x, y))
    exact = hessian_rows(op, torch.arange(op.dim)).diagonal()
    bmodel, bloss = backpack.extend(model), backpack.extend(lossfunc)
    with backpack.backpack(DiagHessian()):
        bloss(bmodel(x), y).backward()
    theirs = torch.cat([p.diag_h.reshape(-1) for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(theirs, exact, rtol=1e-8, atol=1e-12)
    full = hessian_rows(op, torch.arange(op.dim))
    k = 400
    sd = (((full**2).sum(dim=1) - exact**2) / k).sqrt()
    assert ((hutchinson_diagonal(op, n_probes=k, seed=0) - exact).abs() <= 4 * sd + 1e-12).all()

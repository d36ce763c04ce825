"""The step's shared pass over F: computed once for its consumers, never served stale, never kept."""

from __future__ import annotations

import gc
import weakref

import torch
from conftest import mse_loss
from torch import nn

from optprobe.evaluation import Evaluator
from optprobe.full_pass import FullPass


class _Counting(Evaluator):
    """An Evaluator that counts its gradient passes over F."""

    passes = 0

    def full_loss_and_grad(self, params, loader, seed=0, with_grad=True):
        self.passes += 1
        return super().full_loss_and_grad(params, loader, seed, with_grad)


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Dropout(0.3), nn.Linear(5, 1)).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    loader = [(x[:7], x[:7].sum(1, keepdim=True)), (x[7:], x[7:].sum(1, keepdim=True))]
    point = {name: p.detach() for name, p in model.named_parameters()}
    return model, _Counting(model, mse_loss), point, loader


def _fresh(model, point, loader, seed=0):
    """(F, ∇F) from a pass of its own, as the reference value."""
    loss, grad, _ = Evaluator(model, mse_loss).full_loss_and_grad(point, loader, seed)
    return loss, grad


def _same(a, b) -> bool:
    return bool(torch.equal(a[0], b[0])) and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_its_consumers_share_one_pass_and_get_the_same_tensors():
    model, evaluator, point, loader = _setup()
    full = FullPass(evaluator, point, loader, seed=4, uses=2)
    first, second = full.loss_and_grad(point, loader, 4), full.loss_and_grad(point, loader, 4)
    assert evaluator.passes == 1 and first[1] is second[1]
    assert _same(first, _fresh(model, point, loader, seed=4))


def test_a_point_changed_in_place_is_measured_again():
    """An optimizer update (or a checkpoint load) in place between two requests: the new x's ∇F."""
    model, evaluator, point, loader = _setup()
    full = FullPass(evaluator, point, loader, seed=0, uses=2)
    before = full.loss_and_grad(point, loader, 0)
    with torch.no_grad():
        model[0].weight.add_(0.5)
    after = full.loss_and_grad(point, loader, 0)
    assert evaluator.passes == 2 and not _same(before, after)
    assert _same(after, _fresh(model, point, loader))


def test_another_point_loader_seed_or_mode_gets_a_pass_of_its_own():
    model, evaluator, point, loader = _setup()
    full = FullPass(evaluator, point, loader, seed=0, uses=5)
    shared = full.loss_and_grad(point, loader, 0)
    other_point = {name: p.detach() for name, p in model.named_parameters()}  # equal values, other tensors
    requests = [(other_point, loader, 0), (point, list(loader), 0), (point, loader, 1)]
    for params, other_loader, seed in requests:
        got = full.loss_and_grad(params, other_loader, seed)
        assert got[1] is not shared[1] and _same(got, _fresh(model, params, other_loader, seed))
    assert evaluator.passes == 4
    model.eval()  # dropout off: another F
    in_eval = full.loss_and_grad(point, loader, 0)
    assert evaluator.passes == 5 and not _same(in_eval, shared)


def test_nothing_is_kept_after_the_last_announced_consumer():
    model, evaluator, point, loader = _setup()
    full = FullPass(evaluator, point, loader, seed=0, uses=2)
    full.loss_and_grad(point, loader, 0)
    _, grad = full.loss_and_grad(point, loader, 0)
    kept = weakref.ref(grad["0.weight"])
    del grad
    gc.collect()
    assert kept() is None
    full.loss_and_grad(point, loader, 0)  # a request beyond the announced ones: a new pass, not a stale one
    assert evaluator.passes == 2

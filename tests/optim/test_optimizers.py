"""Each optimizer against a few lines of its formula, step by step, in float64."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from optprobe.errors import OptprobeError
from optprobe.optim import (
    OPTIMIZERS,
    AdamProx,
    AdaSGD,
    BlockwiseAdam,
    ClippedSGD,
    GeneralizedSignSGD,
    NormalizedSGD,
    RandomScaling,
    build_optimizer,
)

STEPS = 6


def _params(seed: int = 0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(3, 4, generator=g, dtype=torch.float64)),
            nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))]  # fmt: skip


def _grads(t: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + t)
    return [
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(5, generator=g, dtype=torch.float64),
    ]


def _run(opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> list[torch.Tensor]:
    """Iterates as one flat vector per step, for STEPS steps of the fixed gradient sequence."""
    out = []
    for t in range(STEPS):
        for p, g in zip(params, _grads(t), strict=True):
            p.grad = g.clone()
        opt.step()
        out.append(torch.cat([p.detach().reshape(-1) for p in params]).clone())
    return out


def _reference(update) -> list[torch.Tensor]:
    """Iterates of x ← update(x, g, state, t) on the flat vector."""
    x = torch.cat([p.detach().reshape(-1) for p in _params()])
    state: dict = {}
    out = []
    for t in range(STEPS):
        g = torch.cat([g.reshape(-1) for g in _grads(t)])
        x = update(x, g, state, t + 1)
        out.append(x.clone())
    return out


def _assert_same(ours, ref, rtol=1e-12):
    for t, (a, b) in enumerate(zip(ours, ref, strict=True)):
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-14, msg=f"step {t + 1}")


def _adam_like(lr, b1, b2, eps, second_moment, wd=0.0, prox=False):
    def update(x, g, s, t):
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * second_moment(g)
        if wd and not prox:
            x = x * (1 - lr * wd)
        x = x - lr * (s["m"] / (1 - b1**t)) / (torch.sqrt(s["v"] / (1 - b2**t)) + eps)
        return x / (1 + lr * wd) if prox else x

    return update


def test_adasgd_matches_its_formula():
    ref = _reference(_adam_like(0.01, 0.9, 0.999, 1e-8, lambda g: (g @ g) / g.numel()))
    params = _params()
    _assert_same(_run(AdaSGD(params, lr=0.01), params), ref)


def test_adasgd_block_keeps_its_step_count_and_size_when_a_parameter_has_no_gradient():
    """The first parameter is unused on every other step (.grad None): the block's t still advances
    every step, N stays the whole block, and the unused parameter neither moves nor updates its m."""
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    params = _params()
    opt = AdaSGD(params, lr=lr)
    x = [p.detach().clone() for p in params]
    m, v = [torch.zeros_like(p) for p in x], 0.0
    for t in range(1, STEPS + 1):
        grads = _grads(t)
        if t % 2:
            grads[0] = None
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else g.clone()
        opt.step()
        v = b2 * v + (1 - b2) * sum(float(g.square().sum()) for g in grads if g is not None) / 17
        for i, g in enumerate(grads):
            if g is not None:
                m[i] = b1 * m[i] + (1 - b1) * g
                x[i] = x[i] - lr * (m[i] / (1 - b1**t)) / ((v / (1 - b2**t)) ** 0.5 + eps)
        for p, want in zip(params, x, strict=True):
            torch.testing.assert_close(p.detach(), want, rtol=1e-12, atol=1e-14, msg=f"step {t}")


def test_adasgd_block_keeps_its_step_count_when_its_first_parameter_is_frozen():
    params = _params()
    opt = AdaSGD(params, lr=0.01)
    for t in range(STEPS):
        if t == 3:
            params[0].requires_grad_(False)  # frozen mid-training: the block's count must not restart
        for p, g in zip(params, _grads(t), strict=True):
            p.grad = g.clone() if p.requires_grad else None
        opt.step()
    assert opt.state[params[0]]["step"] == STEPS


def test_blockwise_adam_with_singleton_blocks_is_adam_and_with_one_block_is_adasgd():
    params, twin = _params(), _params()
    _assert_same(_run(BlockwiseAdam(params, lr=0.01, partition="coordinate"), params),
                 _run(torch.optim.Adam(twin, lr=0.01), twin))  # fmt: skip
    params, ref = _params(), _reference(_adam_like(0.01, 0.9, 0.999, 1e-8, lambda g: (g @ g) / g.numel()))
    _assert_same(_run(BlockwiseAdam(params, lr=0.01, partition="group"), params), ref)


def test_blockwise_adam_by_tensor_uses_each_tensors_mean_square():
    def tensor_means(g):
        a, b = g[:12], g[12:]
        return torch.cat([torch.full_like(a, (a @ a) / 12), torch.full_like(b, (b @ b) / 5)])

    params = _params()
    _assert_same(_run(BlockwiseAdam(params, lr=0.01, partition="tensor"), params),
                 _reference(_adam_like(0.01, 0.9, 0.999, 1e-8, tensor_means)))  # fmt: skip
    named = [("fc.weight", params[0]), ("fc.bias", params[1])]
    with pytest.raises(OptprobeError, match="needs names"):
        BlockwiseAdam(params, partition="layer")
    BlockwiseAdam(named, partition="layer").step()


def test_adam_prox_matches_its_formula_and_differs_from_adamw_and_adam_l2():
    ref = _reference(_adam_like(0.01, 0.9, 0.999, 1e-8, torch.square, wd=0.5, prox=True))
    params = _params()
    ours = _run(AdamProx(params, lr=0.01, weight_decay=0.5), params)
    _assert_same(ours, ref)
    for other in (torch.optim.AdamW, torch.optim.Adam):
        twin = _params()
        assert not torch.allclose(_run(other(twin, lr=0.01, weight_decay=0.5), twin)[-1], ours[-1])


@pytest.mark.parametrize("betas", [(0.9, 0.99), (0.9, 0.0)], ids=["generalized", "signsgd_momentum"])
def test_generalized_signsgd_matches_its_formula(betas):
    b1, b2 = betas

    def update(x, g, s, t):
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * s["m"] ** 2
        return x - 0.01 * s["m"] / (torch.sqrt(s["v"]) + 1e-8)

    params = _params()
    ours = _run(GeneralizedSignSGD(params, lr=0.01, betas=betas), params)
    _assert_same(ours, _reference(update))
    if b2 == 0.0:  # signSGD with momentum: every coordinate moves by lr (up to ε/|m| ≤ 1e-5 here)
        steps = ours[1] - ours[0]
        torch.testing.assert_close(steps.abs(), torch.full_like(steps, 0.01), rtol=1e-5, atol=0)


def test_normalized_and_clipped_sgd_match_their_formulas():
    def normalized(x, g, s, t):
        s["m"] = 0.9 * s.get("m", 0) + 0.1 * g
        return x - 0.05 * s["m"] / s["m"].norm()

    def clipped(x, g, s, t):
        return x - min(0.5, 1.0 / float(g.norm())) * g

    params = _params()
    _assert_same(_run(NormalizedSGD(params, lr=0.05, momentum=0.9), params), _reference(normalized))
    params = _params()
    _assert_same(_run(ClippedSGD(params, lr=0.5, clip=1.0), params), _reference(clipped))


def test_random_scaling_with_unit_scale_is_sgd_bit_for_bit(monkeypatch):
    params, twin = _params(), _params()
    opt = RandomScaling(torch.optim.SGD(params, lr=0.1, momentum=0.9))
    monkeypatch.setattr(opt, "draw", lambda: (1.0, 1.0))
    for a, b in zip(_run(opt, params), _run(torch.optim.SGD(twin, lr=0.1, momentum=0.9), twin), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("inner", [torch.optim.SGD, torch.optim.AdamW, AdaSGD])
def test_random_scaling_moves_by_s_times_the_inner_proposal(inner):
    params, shadow = _params(), _params()
    opt = RandomScaling(inner(params, lr=0.05), seed=3)
    plain = inner(shadow, lr=0.05)  # the inner optimizer alone, re-synced to x_{t−1} each step
    scales = []
    for t in range(STEPS):
        with torch.no_grad():
            for s, p in zip(shadow, params, strict=True):
                s.copy_(p)
        before = torch.cat([p.detach().reshape(-1) for p in params]).clone()
        for p, q, g in zip(params, shadow, _grads(t), strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        plain.step()
        u = torch.cat([q.detach().reshape(-1) for q in shadow]) - before
        after = torch.cat([p.detach().reshape(-1) for p in params])
        torch.testing.assert_close(after, before + opt.last_scale * u, rtol=1e-12, atol=1e-13)
        scales.append(opt.last_scale)
    assert len(set(scales)) == STEPS and all(s > 0 for s in scales)


def test_random_scaling_is_seeded_resumable_and_keeps_the_global_rng():
    def scales(opt, n):
        out = []
        for t in range(n):
            for p, g in zip(opt.param_groups[0]["params"], _grads(t), strict=True):
                p.grad = g.clone()
            opt.step()
            out.append((opt.last_scale, opt.last_weight))
        return out

    rng = torch.get_rng_state()
    a = RandomScaling(torch.optim.SGD(_params(), lr=0.1, momentum=0.9), seed=7)
    first = scales(a, 3)
    assert torch.equal(torch.get_rng_state(), rng)
    b = RandomScaling(torch.optim.SGD(_params(), lr=0.1, momentum=0.9), seed=7)
    b.load_state_dict(a.state_dict())
    assert scales(a, 3) == scales(b, 3)
    uniform = RandomScaling(torch.optim.SGD(_params(), lr=0.1), distribution="uniform", seed=1)
    for s, w in scales(uniform, 5):
        assert 0 <= s <= 2 and w == pytest.approx(2 - s)
    assert all(w == 1.0 for _, w in first)


def test_random_scaling_works_with_lr_schedulers():
    opt = RandomScaling(torch.optim.SGD(_params(), lr=0.1))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for p, g in zip(opt.param_groups[0]["params"], _grads(0), strict=True):
        p.grad = g
    opt.step()
    sched.step()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_random_scaling_after_load_state_dict_the_schedule_sets_the_lr_the_inner_optimizer_uses():
    """A resume: the inner load_state_dict replaces its param_groups and state; a scheduler on the wrapper
    and a reader of the wrapper (the Probe's lr column) must still see the inner optimizer's live ones."""
    saved = RandomScaling(torch.optim.SGD(_params(), lr=0.1, momentum=0.9), seed=2)
    torch.optim.lr_scheduler.StepLR(saved, step_size=1, gamma=0.5)
    for p, g in zip(saved.param_groups[0]["params"], _grads(0), strict=True):
        p.grad = g.clone()
    saved.step()
    opt = RandomScaling(torch.optim.SGD(_params(), lr=0.1, momentum=0.9), seed=2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.load_state_dict(saved.state_dict())
    for p, g in zip(opt.param_groups[0]["params"], _grads(1), strict=True):
        p.grad = g.clone()
    opt.step()
    sched.step()
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups is opt.optimizer.param_groups and opt.state is opt.optimizer.state
    assert opt.defaults is opt.optimizer.defaults
    # the momentum buffer the inner step wrote is the one the wrapper's state shows: 0.9 g_0 + g_1
    buffer = opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"]
    torch.testing.assert_close(buffer, 0.9 * _grads(0)[0] + _grads(1)[0], rtol=1e-15, atol=0)


def test_random_scaling_hooks_registered_on_the_wrapper_run_after_a_load_state_dict():
    opt = RandomScaling(torch.optim.SGD(_params(), lr=0.1), seed=2)
    calls = []
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("step"))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("load"))
    opt.load_state_dict(opt.state_dict())
    for p, g in zip(opt.param_groups[0]["params"], _grads(0), strict=True):
        p.grad = g.clone()
    opt.step()
    assert calls == ["load", "step"]


def test_random_scaling_survives_a_deepcopy():
    opt = RandomScaling(torch.optim.SGD(_params(), lr=0.1, momentum=0.9), seed=5)
    twin = copy.deepcopy(opt)
    assert twin.param_groups is twin.optimizer.param_groups and twin.param_groups[0]["lr"] == 0.1
    assert twin.draw() == opt.draw()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_registered_optimizer_builds_and_steps(name):
    if name == "lion":
        pytest.importorskip("lion_pytorch") if not hasattr(torch.optim, "Lion") else None
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = build_optimizer(name, model.named_parameters(), random_scaling=True, lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(8, 3)).pow(2).mean().backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert math.isfinite(opt.last_scale)


def test_unknown_optimizer_and_bad_options_are_clear_errors():
    model = nn.Linear(2, 1)
    with pytest.raises(OptprobeError, match="did you mean 'adamw'"):
        build_optimizer("adamww", model.named_parameters())
    with pytest.raises(OptprobeError, match="does not take"):
        build_optimizer("sgd", model.named_parameters(), betas=(0.9, 0.9))

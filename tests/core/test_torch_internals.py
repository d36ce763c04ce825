"""The torch internals optprobe relies on where torch offers no public route: these tests fail, saying what
changed and where optprobe reads it, when a torch release changes them."""

import inspect

import pytest
import torch
from torch import nn

from optprobe.optim.random_scaling import HOOK_REGISTRATIONS, RandomScaling
from optprobe.step_inputs import unscaled_this_step


def test_grad_scaler_keeps_the_per_optimizer_stage_the_probe_reads():
    """optprobe.step_inputs.unscale_gradients asks whether unscale_ already ran this step; GradScaler
    only says so in its private per-optimizer state."""
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    stages = []
    try:
        for _ in range(2):
            scaler.scale(model(torch.ones(3, 2)).sum()).backward()
            stages.append(unscaled_this_step(scaler, opt))
            scaler.unscale_(opt)
            stages.append(unscaled_this_step(scaler, opt))
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
    except (AttributeError, KeyError, ImportError, TypeError) as exc:
        pytest.fail(
            f"torch {torch.__version__} changed the private GradScaler state that "
            "optprobe.step_inputs.unscaled_this_step reads (_per_optimizer_states[id(optimizer)]['stage'], "
            f"torch.amp.grad_scaler.OptState): {exc!r}; find how this torch tells whether unscale_ ran"
        )
    assert stages == [False, True, False, True], (
        f"torch {torch.__version__}: GradScaler's per-optimizer stage no longer says whether unscale_ ran "
        f"this step (got {stages}); fix optprobe.step_inputs.unscaled_this_step"
    )


def test_random_scaling_hands_every_hook_registration_to_the_inner_optimizer():
    """RandomScaling skips Optimizer.__init__, which makes the private dicts the register_*_hook methods
    write to; each registration must go to the inner optimizer, and its hooks must run."""
    registrations = {
        name
        for name, _ in inspect.getmembers(torch.optim.Optimizer, inspect.isfunction)
        if name.startswith("register_") and name.endswith("_hook")
    }
    assert registrations <= set(HOOK_REGISTRATIONS), (
        f"torch {torch.__version__}'s Optimizer has hook registrations that RandomScaling does not hand to "
        f"its inner optimizer: {sorted(registrations - set(HOOK_REGISTRATIONS))}; add them to "
        "optprobe.optim.random_scaling.HOOK_REGISTRATIONS"
    )
    model = nn.Linear(2, 1)
    opt = RandomScaling(torch.optim.SGD(model.parameters(), lr=0.1))
    calls = []
    for name in HOOK_REGISTRATIONS:
        getattr(opt, name)(lambda *args, name=name: calls.append(name))
    model(torch.ones(3, 2)).sum().backward()
    opt.step()
    opt.load_state_dict(opt.state_dict())
    assert sorted(calls) == sorted(HOOK_REGISTRATIONS)

"""Random scaling (Zhang & Cutkosky): x_t = x_{t−1} + s_t u_t, with u_t the step any optimizer proposes.

For s ~ Exp(1), E[F(x + sΔ) − F(x)] = E[⟨∇F(x + sΔ), Δ⟩] (integration by parts against e^{−s}), so the
cumulative ⟨g_t, u_t⟩ is an unbiased account of the loss change. For s ~ Uniform(0, 2) the same holds
with the importance weight w(s) = 2 − s: E[F(x + sΔ) − F(x)] = E[(2 − s)⟨∇F(x + sΔ), Δ⟩].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from optprobe.errors import OptprobeError

DISTRIBUTIONS = ("exponential", "uniform")


def _inner(name: str) -> Any:
    """A property that reads and writes the attribute ``name`` of the wrapped ``self.optimizer``."""
    return property(
        lambda self: getattr(self.optimizer, name), lambda self, value: setattr(self.optimizer, name, value)
    )


#: torch.optim.Optimizer's public methods that register hooks: each keeps its hooks in a private dict made
#: by Optimizer.__init__, which the wrapper does not run, so the wrapper hands them to the inner optimizer
#: (whose step, state_dict and load_state_dict run them); tests/core/test_torch_internals.py checks that
#: this is all of them.
HOOK_REGISTRATIONS = (
    "register_step_pre_hook",
    "register_step_post_hook",
    "register_state_dict_pre_hook",
    "register_state_dict_post_hook",
    "register_load_state_dict_pre_hook",
    "register_load_state_dict_post_hook",
)


def _to_inner(name: str) -> Callable[..., Any]:
    """The method ``name`` of the wrapped ``self.optimizer``, called with the same arguments."""

    def method(self: RandomScaling, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.optimizer, name)(*args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"The inner optimizer's ``{name}`` (its hooks run with the inner optimizer)."
    return method


class RandomScaling(torch.optim.Optimizer):
    """Wraps ``optimizer``: its step proposes u_t = x' − x_{t−1}; the parameters become x_{t−1} + s_t u_t.

    One global s_t per step is drawn from a private seeded generator (the global RNG is untouched).
    The inner optimizer's state never sees s_t. After each step ``last_scale`` is s_t and
    ``last_weight`` its importance weight (1 for Exp(1), 2 − s_t for Uniform(0, 2)); the Probe reads
    both to record ``update_corr_rs``. Costs one parameter copy per step.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, distribution: str = "exponential", seed: int = 0
    ) -> None:
        if distribution not in DISTRIBUTIONS:
            raise OptprobeError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
        if isinstance(optimizer, RandomScaling):
            raise OptprobeError("the optimizer is already wrapped in RandomScaling")
        self.optimizer = optimizer
        self.distribution = distribution
        self.generator = torch.Generator().manual_seed(seed)
        self.last_scale = 1.0
        self.last_weight = 1.0

    # Delegated, never copied: the inner load_state_dict replaces its param_groups and state objects, so a
    # reference taken once would leave schedulers and the Probe writing and reading a stale list after a
    # resume. Hooks registered on the wrapper live with the inner optimizer, whose step runs them.
    param_groups = _inner("param_groups")
    state = _inner("state")
    defaults = _inner("defaults")
    # The register_*_hook methods of HOOK_REGISTRATIONS are the inner optimizer's (set below the class).

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim.Optimizer's pickles only defaults/state/param_groups, which here belong to the inner one
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def draw(self) -> tuple[float, float]:
        """(s, w): a scale and its importance weight."""
        u = float(torch.rand((), generator=self.generator, dtype=torch.float64))
        if self.distribution == "exponential":
            return -float(torch.log1p(torch.tensor(-u, dtype=torch.float64))), 1.0  # s = −log(1 − u)
        return 2.0 * u, 2.0 - 2.0 * u

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        params = [p for group in self.param_groups for p in group["params"]]
        before = [p.detach().clone() for p in params]
        loss = self.optimizer.step(closure)
        scale, weight = self.draw()
        for p, start in zip(params, before, strict=True):
            # x_{t−1} + s (x' − x_{t−1}) written as x' + (1 − s)(x_{t−1} − x'): exactly x' when s = 1
            p.add_(start.sub_(p).mul_(1.0 - scale))
        self.last_scale, self.last_weight = scale, weight
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {
            "inner": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "last_scale": self.last_scale,
            "last_weight": self.last_weight,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict["inner"])
        self.generator.set_state(state_dict["generator"])
        self.last_scale, self.last_weight = state_dict["last_scale"], state_dict["last_weight"]

    def __repr__(self) -> str:
        return f"RandomScaling({self.distribution}, {self.optimizer!r})"


for _name in HOOK_REGISTRATIONS:
    setattr(RandomScaling, _name, _to_inner(_name))

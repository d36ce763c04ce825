"""The Probe's settings: what to measure and how often (:class:`ProbeConfig`).

Kept apart from :mod:`optprobe.probe` and free of torch, so that reading an experiment file (whose
``probe`` table is a :class:`ProbeConfig`, see :mod:`optprobe.experiments.config`) stays quick.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from optprobe.errors import OptprobeError

FAMILIES = ("convexity", "smoothness", "correlation", "norms")  # the default; any registered family works
#: settings that change how the columns are computed, not what they measure: a run may switch them when it
#: resumes (its checkpoint and run.json are compared without them)
HOW_ONLY = ("compile_reductions",)


@dataclass
class ProbeConfig:
    """What to measure and how often.

    metrics: trajectory metric families to compute (by registered name, see
        :mod:`optprobe.metrics.registry`; default ``FAMILIES``; ``("convexity",)`` is the cheap "gaps only"
        set: one extra forward per measured step). ``Probe(metrics=[...])`` also takes metric instances.
    every: measure trajectory metrics every ``every`` steps (step 0, every, 2·every, …). Each measured
        step is still one step (Δ_t = x_t − x_{t−1}); the cumulative sums (``cum_*``), windows and EMAs
        run over the measured steps only, so with every = k ``cum_update_corr`` sums one step in k.
    betas: EMA coefficients of ``exp_gap`` and ``exp_smooth``.
    window: "epoch" (avg/max/EMA restart at each ``end_epoch``) or "none" (one window for the run).
    per_layer: also write per-layer columns ``<metric>/<layer>`` beside the global values.
    full_batch_every: full-batch metrics every k steps (0: never on steps); needs ``eval_loader``. A step
        at the point an epoch end has just measured (the same x) is not measured again.
    full_batch_at_epoch_end: full-batch metrics at each ``end_epoch`` (when ``eval_loader`` is given).
    seed: seed of the randomness (dropout) inside full-batch passes (chunk c of F draws after
        ``torch.manual_seed(chunk_seed(seed, c))``) and periodic passes (after ``torch.manual_seed(seed)``).
    eval_mode: run full-batch and periodic passes with ``model.eval()`` (restored afterwards); each point
        then uses its own buffers: x_t the model's current ones, x* the reference's.
    replay_rng: replay the training step's RNG state at x_{t−1} and x*, so dropout masks match.
    compile_reductions: reduce each parameter tensor of at least 2^14 elements on a CPU (2^19 on a GPU)
        with one kernel compiled by ``torch.compile`` (:mod:`optprobe.fused`): one read of each source,
        sums in the sources' dtype (float32 at least) within rows of 4096 entries, the rows' sums in
        float64. Each set of columns compiles once, on its first measured step (seconds; a C++ compiler
        on a CPU, Triton on a GPU); if compiling fails, a warning says why and the eager reductions are
        used. Worth it for long runs of large models.
    """

    metrics: tuple[str, ...] = FAMILIES
    every: int = 1
    betas: tuple[float, ...] = (0.99,)
    window: str = "epoch"
    per_layer: bool = False
    full_batch_every: int = 0
    full_batch_at_epoch_end: bool = True
    seed: int = 0
    eval_mode: bool = False
    replay_rng: bool = True
    compile_reductions: bool = False

    def __post_init__(self) -> None:
        self.metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        self.betas = (self.betas,) if isinstance(self.betas, (int, float)) else tuple(self.betas)
        self.betas = tuple(float(b) for b in self.betas)
        for name in ("every", "full_batch_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy integers are fine
                raise OptprobeError(f"{name} must be an integer, got {value!r}")
            setattr(self, name, int(value))
        self._check_metrics()
        if self.every < 1:
            raise OptprobeError(f"every must be a positive number of steps, got {self.every}")
        if self.full_batch_every < 0:
            raise OptprobeError(f"full_batch_every must be ≥ 0 (0 turns it off), got {self.full_batch_every}")
        if any(not 0.0 <= b < 1.0 for b in self.betas):
            raise OptprobeError(f"each EMA beta must lie in [0, 1), got {self.betas}")
        if self.window not in ("epoch", "none"):
            raise OptprobeError(f"window must be 'epoch' or 'none', got {self.window!r}")

    def _check_metrics(self) -> None:
        """Refuse a metric family no module registers (this loads the built-in metrics, hence torch)."""
        from optprobe.metrics import registry

        for name in self.metrics:
            registry.check_family(name)

"""Per-sample gradient noise against an explicit loop over samples, and GSNR where it is known."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import train
from torch import nn

from optprobe.evaluation import Evaluator
from optprobe.metrics.curvature import PERIODIC_METRICS
from optprobe.metrics.gradient_noise import GradientNoise
from optprobe.probe import Probe


def _mse(model: nn.Module, batch) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch["x"]), batch["y"])


def test_noise_trace_relative_noise_and_gsnr_match_a_loop_over_samples():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    batch = {"x": torch.randn(11, 4, dtype=torch.float64), "y": torch.randn(11, 2, dtype=torch.float64)}
    params = dict(model.named_parameters())
    per_sample = []
    for i in range(11):  # the definition: one backward per example
        model.zero_grad()
        _mse(model, {"x": batch["x"][i : i + 1], "y": batch["y"][i : i + 1]}).backward()
        per_sample.append({k: p.grad.detach().clone() for k, p in params.items()})
    stacked = {k: torch.stack([g[k] for g in per_sample]) for k in params}
    mean = {k: s.mean(0) for k, s in stacked.items()}
    var = {k: s.var(0, unbiased=True) for k, s in stacked.items()}
    trace = float(sum(v.sum() for v in var.values()))
    rel = trace / float(sum((m**2).sum() for m in mean.values()))
    detached = {k: p.detach() for k, p in params.items()}
    out = GradientNoise(chunk_size=4).compute(Evaluator(model, _mse), detached, batch, 0)  # chunks 4, 4, 3
    assert out["grad_noise_trace"] == pytest.approx(trace, rel=1e-10)
    assert out["grad_noise_rel"] == pytest.approx(rel, rel=1e-10)
    for layer in ("0", "2"):
        names = [f"{layer}.weight", f"{layer}.bias"]
        ratio = torch.cat([(mean[k] ** 2 / var[k]).reshape(-1) for k in names])
        assert out[f"gsnr/{layer}"] == pytest.approx(float(ratio.mean()), rel=1e-10)
    trace_by_definition = sum(
        float(sum(((g[k] - mean[k]) ** 2).sum() for k in params)) for g in per_sample
    ) / (11 - 1)  # tr Σ̂ = Σ_i ‖g_i − ḡ‖² / (B − 1), the other way round
    assert out["grad_noise_trace"] == pytest.approx(trace_by_definition, rel=1e-10)


class _Known(nn.Module):
    """ℓ_i = ½(w − z_i)² + ½‖v − z_i c‖² + ½(u − 1)²: g_i = (w − z_i, v − z_i c, u − 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([3.5], dtype=torch.float64))
        self.v = nn.Parameter(torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.u = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
        self.register_buffer("c", torch.tensor([1.0, 2.0], dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        per_example = (self.w - z) ** 2 + ((self.v - z[:, None] * self.c) ** 2).sum(1) + (self.u - 1) ** 2
        return 0.5 * per_example.mean()


def test_gsnr_on_a_model_where_it_is_known():
    """z = (0, 1, 2, 3): z̄ = 1.5, var z = 5/3. w: ḡ = 2, GSNR = 4 / (5/3) = 2.4; v_j: ḡ_j = v_j − 1.5 c_j,
    Σ̂_jj = c_j² · 5/3; u: no noise at all (Σ̂ = 0: left out, so its GSNR is undefined)."""
    model = _Known()
    z = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    params = {k: p.detach() for k, p in model.named_parameters()}
    out = GradientNoise(chunk_size=3).compute(Evaluator(model, lambda m, b: m(b)), params, z, 0)
    var_z = 5 / 3
    assert out["gsnr/w"] == pytest.approx(2.4, rel=1e-12)
    g_v = [0.0 - 1.5 * 1.0, 1.0 - 1.5 * 2.0]
    assert out["gsnr/v"] == pytest.approx((g_v[0] ** 2 / var_z + g_v[1] ** 2 / (4 * var_z)) / 2, rel=1e-12)
    assert math.isnan(out["gsnr/u"])
    trace = var_z * (1 + 1 + 4)
    assert out["grad_noise_trace"] == pytest.approx(trace, rel=1e-12)
    signal = 2.0**2 + g_v[0] ** 2 + g_v[1] ** 2 + 1.0**2
    assert out["grad_noise_rel"] == pytest.approx(trace / signal, rel=1e-12)


def test_gradient_noise_is_a_registered_periodic_metric_of_the_probe(tmp_path):
    assert PERIODIC_METRICS["gradient_noise"] is GradientNoise
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [{"x": torch.randn(8, 3), "y": torch.randn(8, 1)} for _ in range(4)]
    probe = Probe(model, _mse, optimizer=opt, out_dir=tmp_path, metrics=["norms"],
                  periodic=[GradientNoise(every=2, chunk_size=3)])  # fmt: skip
    train(model, _mse, batches, opt, probe)
    table = probe.table().set_index("step")
    assert table["grad_noise_trace"].notna().tolist() == [True, False, True, False]
    assert (table["grad_noise_rel"].dropna() > 0).all() and table["gsnr/0"].notna().any()

"""The metric registry: family names, instances and user-registered families all reach the Probe."""

from __future__ import annotations

import pytest
import torch
from conftest import mse_loss, train
from torch import nn

from optprobe.errors import OptprobeError
from optprobe.metrics import Needs, StepData, TrajectoryMetric
from optprobe.metrics.curvature import PERIODIC_METRICS, Sharpness
from optprobe.metrics.registry import _TRAJECTORY, trajectory_families, trajectory_family
from optprobe.probe import FAMILIES, Probe, ProbeConfig


class _ParamNormSquared(TrajectoryMetric):
    needs = Needs(dots=frozenset({("x", "x")}))

    def update(self, data: StepData) -> dict[str, float]:
        return {"param_norm_sq": data.dot("x", "x")}


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.randn(8, 3), torch.randn(8)) for _ in range(n)]


def test_the_default_families_and_periodic_metrics_are_registered():
    assert set(FAMILIES) <= set(trajectory_families())
    assert {"sharpness", "hessian_trace", "diagonal_geometry"} <= set(PERIODIC_METRICS)


def test_a_registered_family_works_by_name_in_the_config(tmp_path):
    @trajectory_family("param_norm_sq")
    def _factory(setup):
        return _ParamNormSquared()

    try:
        model = nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        expected = sum(float((p.detach().double() ** 2).sum()) for p in model.parameters())  # at x_0
        probe = Probe(model, mse_loss, optimizer=opt, out_dir=tmp_path,
                      config=ProbeConfig(metrics=("param_norm_sq",)))  # fmt: skip
        train(model, mse_loss, _batches(), opt, probe)
        table = probe.table()
        assert "update_corr" not in table.columns
        assert table["param_norm_sq"].iloc[0] == pytest.approx(expected, rel=1e-6)
    finally:
        del _TRAJECTORY["param_norm_sq"]


def test_metrics_argument_mixes_names_and_instances_and_refuses_the_rest():
    model = nn.Linear(3, 1)
    probe = Probe(model, mse_loss, out_dir=None, metrics=["norms", _ParamNormSquared()])
    assert [type(m).__name__ for m in probe.metrics] == ["Norms", "_ParamNormSquared"]
    assert probe.config.metrics == ("norms",)
    with pytest.raises(OptprobeError, match="did you mean 'smoothness'"):
        Probe(model, mse_loss, out_dir=None, metrics=["smoothnes"])
    with pytest.raises(OptprobeError, match="periodic"):
        Probe(model, mse_loss, out_dir=None, metrics=[Sharpness()])
    with pytest.raises(OptprobeError, match="family names or TrajectoryMetric instances"):
        Probe(model, mse_loss, out_dir=None, metrics=[_ParamNormSquared])  # the class, not an instance


def test_resume_refuses_a_probe_with_other_metric_classes(tmp_path):
    model = nn.Linear(3, 1)
    probe = Probe(model, mse_loss, out_dir=None, metrics=["norms", _ParamNormSquared()])
    other = Probe(model, mse_loss, out_dir=None, metrics=["norms", _ParamNormSquared(), _ParamNormSquared()])
    with pytest.raises(OptprobeError, match="another metric_classes"):
        other.load_state_dict(probe.state_dict())

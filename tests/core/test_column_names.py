"""Tracker names come from what each metric class declares: every column a built-in writes has a family."""

from __future__ import annotations

import torch
from conftest import mse_loss, train
from torch import nn

from optprobe.metrics import StepData, TrajectoryMetric
from optprobe.metrics.curvature import HessianTrace, Sharpness, SingularUniformity
from optprobe.metrics.gradient_noise import GradientNoise
from optprobe.probe import Probe, ProbeConfig
from optprobe.sinks.names import NOT_METRICS, family, tag, tracked_scalars


def test_every_column_of_the_built_in_metrics_is_declared(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    batches = [(torch.randn(8, 3), torch.randn(8)) for _ in range(4)]
    periodic = [Sharpness(every=2, max_iter=5), HessianTrace(every=2, n_probes=2),
                SingularUniformity(every=2), GradientNoise(every=2)]  # fmt: skip
    families = ["convexity", "smoothness", "correlation", "norms", "distance", "update_cosine"]
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=tmp_path, metrics=families, periodic=periodic,
                  reference=nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)), eval_loader=batches,
                  config=ProbeConfig(per_layer=True, full_batch_every=2, betas=(0.9, 0.99)))  # fmt: skip
    train(model, mse_loss, batches, opt, probe)
    columns = [c for c in probe.table().columns if c not in NOT_METRICS]
    assert len(columns) > 60
    undeclared = [c for c in columns if family(c.partition("/")[0]) == "other"]
    assert undeclared == []
    expected = {"update_cos": "update_cosine", "dist_init": "distance", "grad_noise_trace": "gradient_noise",
                "gsnr": "gradient_noise", "cum_update_corr_rs": "correlation", "full_grad_norm": "fullbatch",
                "sharpness_hvps": "curvature", "hessian_trace_se": "curvature", "effective_rank": "curvature",
                "loss": "train", "grad_norm": "norms", "exp_smooth_ref_0.9": "smoothness"}  # fmt: skip
    assert {c: family(c) for c in expected} == expected
    assert tag("exp_gap_ref_0.99/0", (0.9, 0.99)) == "optprobe/convexity/layers/exp_gap_ref_beta1/0"


class _Mine(TrajectoryMetric):
    family, columns, emas = "mine", ("my_gap", "my_ema"), ("my_ema",)

    def update(self, data: StepData) -> dict[str, float]:
        return {"my_gap": 1.0, "my_ema_prev_0.9": 2.0}


def test_a_users_metric_class_names_its_own_tracker_family():
    row = _Mine().update(None)  # type: ignore[arg-type]
    expected = {"optprobe/mine/my_gap": 1.0, "optprobe/mine/my_ema_prev_beta0": 2.0}
    assert tracked_scalars(row, betas=(0.9,)) == expected
    assert family("not_declared_anywhere") == "other"

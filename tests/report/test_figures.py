"""Figures: non-empty PNG and PDF files, with and without optional columns; None when nothing to draw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from synthetic import synthetic_table

from optprobe.report.figures import FIGURES, make_figures


@pytest.fixture(scope="module")
def full_runs() -> list[tuple[str, pd.DataFrame]]:
    return [
        ("sgdm", synthetic_table(steps=120, seed=0)),
        ("adamw", synthetic_table(steps=120, seed=1, lr=0.05)),
    ]


def test_every_figure_is_drawn_for_a_run_with_every_column(tmp_path, full_runs):
    saved = make_figures(full_runs, tmp_path, prefix="exp__")
    assert list(saved) == list(FIGURES)
    for name, png in saved.items():
        assert png.name == f"exp__{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert png.with_suffix(".pdf").stat().st_size > 1000


def test_a_run_without_optional_columns_gets_only_the_figures_it_has_data_for(tmp_path):
    n = 40
    minimal = pd.DataFrame(
        {
            "step": np.arange(n),
            "loss": np.linspace(1, 0.1, n),
            "lr": 0.1,
            "inst_gap_prev": np.r_[np.nan, -np.ones(n - 1)],
            "update_corr": np.r_[np.nan, np.full(n - 1, -0.5)],
        }
    )
    saved = make_figures([("plain", minimal)], tmp_path)
    assert set(saved) == {"full_loss", "convexity_gaps", "update_correlation"}
    assert all(png.stat().st_size > 5000 for png in saved.values())


def test_figure_functions_return_none_without_data():
    empty = [("nothing", pd.DataFrame({"step": [0, 1]}))]
    assert all(make(empty) is None for make in FIGURES.values())


def _seeds(label: str, n: int, full_batch: bool, lr: float = 0.1):
    info = {"full_batch": full_batch}
    return [(label, synthetic_table(steps=120, seed=s, lr=lr), {**info, "seed": s}) for s in range(n)]


def test_seeds_of_a_run_are_one_mean_curve_with_a_min_max_band():
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from optprobe.report.figures import seed_band
    from optprobe.report.verdicts import series

    runs = _seeds("gd", 3, True)
    fig = FIGURES["full_loss"](runs)
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() == "F($x_{t}$)"]  # mathtext
    assert len(lines) == 1  # one curve for the three seeds
    per_seed = pd.concat([series(t, "full_loss") for _, t, _ in runs], axis=1)
    assert np.allclose(lines[0].get_ydata(), per_seed.mean(axis=1).to_numpy())
    assert ax.get_legend().get_title().get_text() == "mean of 3 seeds, band min–max"
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 3  # ℓ, F and F(x*) each have their band
    per_step = [series(t, "loss") for _, t, _ in runs]  # noisy: the seeds differ
    mean, low, high = seed_band(per_step)
    frame = pd.concat(per_step, axis=1)
    assert np.allclose(low, frame.min(axis=1)) and np.allclose(high, frame.max(axis=1))
    assert (low < mean).all() and (mean < high).all()
    assert ax.get_legend() is not None and ax.get_legend().get_bbox_to_anchor().x0 > ax.bbox.x1
    plt.close(fig)


def test_no_two_over_eta_line_for_a_minibatch_run():
    import matplotlib.pyplot as plt

    def labels(runs):
        fig = FIGURES["sharpness"](runs)
        names = [line.get_label() for line in fig.axes[0].get_lines()]
        plt.close(fig)
        return names

    assert any("2/η" in name for name in labels(_seeds("gd", 2, True)))
    assert not any("2/η" in name for name in labels(_seeds("sgd", 2, False)))
    assert any("2/η" in name for name in labels([("plain", synthetic_table(steps=60))]))  # unknown: drawn


def test_saved_figures_keep_the_outside_legend_and_fit_1280_px(tmp_path):
    from PIL import Image

    from optprobe.report.figures import DPI, PANEL_SIZE

    runs = _seeds("sgdm", 2, False) + _seeds("adamw_with_a_long_label", 2, False, lr=0.05)
    saved = make_figures(runs, tmp_path)
    for name, png in saved.items():
        width = Image.open(png).size[0]
        if name != "r_med":
            assert width > PANEL_SIZE[0] * DPI  # the legend right of the axes made it wider: not clipped
        assert width <= 1400, name


def test_the_spectral_density_figure_appears_for_runs_that_recorded_the_density(tmp_path):
    """A run table with the spectral_density metric's columns gets the figure: per run one log-scale panel,
    a curve per picked measured step drawn at the recorded bins; a table without them does not."""
    from optprobe.report.figures_curvature import spectral_density

    with_density = synthetic_table(steps=120, seed=0)  # density at steps 0, 50, 100
    assert "spectral_density" in make_figures([("sgd", with_density)], tmp_path)
    fig = spectral_density([("sgd", with_density), ("adam", with_density)])
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert len(axes) == 2 and all(ax.get_yscale() == "log" for ax in axes)
    curves = [line for line in axes[0].lines if line.get_label().startswith("step")]
    assert [line.get_label() for line in curves] == ["step 0", "step 50", "step 100"]
    bins = [c for c in with_density.columns if c.startswith("density_bin")]
    x, y = curves[-1].get_data()
    np.testing.assert_allclose(x, np.linspace(-1.0, 3.0, len(bins)))
    recorded = with_density.loc[100, bins].to_numpy(float)
    np.testing.assert_allclose(y, np.maximum(recorded, 1e-6 * recorded.max()))  # floored for the log axis
    assert "negative mass 0.450" in axes[0].get_title()
    without = synthetic_table(steps=120, seed=0).drop(columns=bins)
    assert spectral_density([("sgd", without)]) is None
    assert "spectral_density" not in make_figures([("sgd", without)], tmp_path / "none")


def mse_loss(model, batch):
    x, y = batch
    return ((model(x).squeeze(-1) - y) ** 2).mean()


def test_a_probed_run_with_the_spectral_density_metric_gets_the_figure(tmp_path):
    """The metric's columns are the ones the figure reads: a short probed run, its table, the figure."""
    import torch
    from torch import nn

    from optprobe.metrics.curvature import SpectralDensityMetric
    from optprobe.probe import Probe, ProbeConfig
    from optprobe.report.figures_curvature import spectral_density

    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    batches = [(torch.randn(8, 3), torch.randn(8)) for _ in range(5)]
    metric = SpectralDensityMetric(every=2, n_starts=4, steps=8, bins=20)
    probe = Probe(model, mse_loss, optimizer=opt, periodic=[metric], out_dir=tmp_path,
                  config=ProbeConfig(metrics=("norms",)))  # fmt: skip
    for batch in batches:  # the README's loop (tests/report cannot import tests/conftest.py: another
        probe.begin_step(batch)  # folder's conftest module has that name when the whole suite runs)
        opt.zero_grad()
        loss = mse_loss(model, batch)
        loss.backward()
        probe.end_step(loss)
        opt.step()
    probe.close()
    fig = spectral_density([("sgd", probe.table())])
    curves = [line.get_label() for ax in fig.axes for line in ax.lines if line.get_label().startswith("step")]
    assert curves == ["step 0", "step 2", "step 4"]

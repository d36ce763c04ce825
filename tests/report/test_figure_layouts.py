"""The per-experiment figure layouts on synthetic runs: each builds, with the panels its paper's figure has;
bias-corrected EMAs, mathtext subscripts, and the registry that lets an experiment replace a common figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from synthetic import LAYERS, synthetic_table

from optprobe.report.figures import EXPERIMENT_FIGURES, FIGURES, figure_functions
from optprobe.report.figures_base import bias_corrected_ema


def _runs(labels, seeds=2, steps=120, **info):
    """(label, table, info) for each label and seed."""
    return [(label, synthetic_table(steps=steps, seed=s + 7 * i), {"seed": s, **info})
            for i, label in enumerate(labels) for s in range(seeds)]  # fmt: skip


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_visible()]


def _draw(experiment: str, name: str, runs) -> list[str]:
    fig = figure_functions(experiment)[name](runs)
    assert fig is not None, name
    titles = _titles(fig)
    plt.close(fig)
    return titles


def test_random_scaling_is_one_panel_per_optimizer_with_and_without_rs():
    runs = _runs(["sgdm", "sgdm_rs", "adamw", "adamw_rs"])
    fig = figure_functions("random_scaling")["random_scaling"](runs)
    assert _titles(fig) == ["sgdm", "adamw"]
    labels = {line.get_label() for line in fig.axes[0].get_lines()}
    assert {"without RS: Σ⟨$g_{t}$, $Δ_{t}$⟩", "with RS: Σ⟨$g_{t}$, $Δ_{t}$/$s_{t}$⟩"} <= labels
    assert not any(label.startswith("without RS: Σ⟨$g_{t}$, $Δ_{t}$/") for label in labels)  # = update_corr
    assert fig.legends and fig.legends[0].get_title().get_text() == "mean of 2 seeds, band min–max"
    plt.close(fig)


def test_update_correlation_and_convexity_ratio_have_one_panel_per_run():
    runs = _runs(["logistic_sgd", "cnn_sgdm", "gpt_adamw"], task="t", optimizer="o")
    assert _draw("update_correlation", "update_correlation", runs) == [
        "logistic_sgd (t, o)", "cnn_sgdm (t, o)", "gpt_adamw (t, o)"]  # fmt: skip
    refs = [(label, t, {**i, "run_config": {"reference": label + "_pilot"}}) for label, t, i in
            _runs(["longer_pilot", "other_seed"])]  # fmt: skip
    assert _draw("convexity_ratio", "convexity_ratio", refs) == [
        "longer_pilot (x* = longer_pilot_pilot)", "other_seed (x* = other_seed_pilot)"]  # fmt: skip


def test_rotation_layouts_pair_each_optimizer_with_its_rotated_twin():
    quad = {"task": "quadratic", "full_batch": True, "run_config": {"task_options": {"minimizer": "zero"}}}
    runs = _runs(["adam", "adam_rotated", "adasgd", "adasgd_rotated", "sgdm", "sgdm_rotated"], **quad)
    names = figure_functions("rotation")
    assert list(names)[:2] == ["optimality_gap", "rotation_geometry"]  # per optimizer, not one overlay
    assert _draw("rotation", "optimality_gap", runs) == ["adam", "adasgd", "sgdm"]
    fig = names["rotation_geometry"](runs)
    ax = [a for a in fig.axes if a.get_visible()][0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [label for label, _, _ in runs[::2]]
    assert ax.get_yscale() == "log" and len(ax.patches) == 12  # ‖H‖₁,₁/d and ‖H‖₂ per run
    plt.close(fig)


def test_scale_freeness_layouts_divide_the_scaled_loss_by_c():
    quad = _runs(["gd", "gd_twin", "adam", "adam_twin", "lion", "lion_twin"], task="quadratic")
    assert _draw("scale_freeness", "scale_free_quadratic", quad) == ["gd", "adam", "lion"]
    resnet = []
    for label, c in (("adamw", 1.0), ("adamw_x16", 16.0), ("adam_l2", 1.0), ("adam_l2_x16", 16.0)):
        table = synthetic_table(steps=60, seed=0)
        table["loss"] *= c  # the same trajectory on c·F: drawn ÷ c, the two curves coincide
        info = {"task": "resnet_digits", "run_config": {"task_options": {"loss_scale": c}}}
        resnet.append((label, table, info))
    fig = figure_functions("scale_freeness")["scale_free_resnet"](resnet)
    assert _titles(fig) == ["adamw", "adam_l2"]
    plain, scaled = (line.get_ydata() for line in fig.axes[0].get_lines()[:2])
    assert np.allclose(plain, scaled)
    plt.close(fig)


def test_relaxed_smoothness_scatter_draws_the_fitted_envelope():
    from optprobe.curvature.relaxed import relaxed_smoothness
    from optprobe.report.verdicts import paired

    runs = _runs(["sgd", "normalized_sgd"], seeds=1, steps=300)  # ‖∇F‖ every 20 steps: 14 pairs
    fig = figure_functions("relaxed_smoothness")["relaxed_smoothness"](runs)
    pairs = paired(runs[0][1], "full_grad_norm", "inst_smooth_prev")
    fit = relaxed_smoothness(pairs.iloc[:, 0].to_numpy(), pairs.iloc[:, 1].to_numpy())
    assert _titles(fig)[0] == f"sgd: L0 = {fit.l0:.3g}, L1 = {fit.l1:.3g}"
    envelope = fig.axes[0].get_lines()[0]
    assert np.allclose(envelope.get_ydata(), fit.l0 + fit.l1 * envelope.get_xdata())
    plt.close(fig)


def _levels(table: pd.DataFrame, scale: float) -> pd.DataFrame:
    """R_med measured at three loss levels (the first crossing of each), as DiagonalGeometry writes it."""
    table = table.copy()
    rows = table.index[[10, 40, 80]]
    table.loc[rows, "r_med_level"] = [1.0, 0.5, 0.25]
    table.loc[rows, "r_med_loss"] = [0.98, 0.49, 0.24]
    for i, layer in enumerate(LAYERS):
        table.loc[rows, f"r_med/{layer}"] = scale * (i + 1) * np.array([1.0, 2.0, 3.0])
        table.loc[rows, f"r_med_low/{layer}"] = table.loc[rows, f"r_med/{layer}"] * 0.8
        table.loc[rows, f"r_med_high/{layer}"] = table.loc[rows, f"r_med/{layer}"] * 1.3
    return table.drop(columns=[f"r_med/{layer}" for layer in LAYERS]).join(
        table[[f"r_med/{layer}" for layer in LAYERS]].where(table["r_med_level"].notna()))


def test_r_med_is_drawn_per_layer_at_the_loss_levels():
    runs = [("adam", _levels(synthetic_table(steps=120, seed=s), 1.0), {"seed": s}) for s in (0, 1)]
    runs += [("sgdm", _levels(synthetic_table(steps=120, seed=s), 2.0), {"seed": s}) for s in (0, 1)]
    fig = figure_functions("diagonal_uniformity")["r_med"](runs)
    assert _titles(fig) == list(LAYERS)
    adam = fig.axes[0].get_lines()[0]
    assert list(adam.get_xdata()) == [0.25, 0.5, 1.0] and np.allclose(adam.get_ydata(), [3.0, 2.0, 1.0])
    assert fig.axes[0].xaxis_inverted()  # lower loss (later in training) to the right
    plt.close(fig)


def test_every_experiment_layout_returns_none_without_its_data():
    empty = [("nothing", pd.DataFrame({"step": [0, 1]}), {})]
    for layouts in EXPERIMENT_FIGURES.values():
        assert all(make(empty) is None for make in layouts.values())


def test_an_experiment_without_a_layout_gets_the_common_figures():
    assert figure_functions("gradient_statistics") == FIGURES
    own_first = ["random_scaling"] + [name for name in FIGURES if name != "random_scaling"]
    assert list(figure_functions("random_scaling")) == own_first  # its own first, replacing the overlay


@pytest.mark.parametrize("window", ["epoch", "none"])
def test_an_ema_restarted_at_each_epoch_end_is_drawn_bias_corrected(window):
    beta, steps = 0.9, 30
    epoch = np.arange(steps) // 10
    level = 2.0 + epoch  # constant within each epoch
    ema, k = np.zeros(steps), 0
    for t in range(steps):
        k = 1 if (window == "epoch" and t and epoch[t] != epoch[t - 1]) or t == 0 else k + 1
        previous = 0.0 if k == 1 and window == "epoch" else (ema[t - 1] if t else 0.0)
        ema[t] = beta * previous + (1 - beta) * level[t]
    table = pd.DataFrame({"step": np.arange(steps), "epoch": epoch, "inst_gap_prev": level,
                          "exp_gap_prev_0.9": ema})  # fmt: skip
    corrected = bias_corrected_ema(table, {"probe_config": {"window": window}}, "exp_gap_prev_0.9")
    if window == "epoch":
        assert np.allclose(corrected, level)  # the weighted mean of a constant window is the constant
    else:
        weights = beta ** np.arange(steps)[::-1]
        expected = [np.sum(weights[-t - 1 :] * level[: t + 1]) / np.sum(weights[-t - 1 :])
                    for t in range(steps)]  # fmt: skip
        assert np.allclose(corrected, expected)
    if window == "epoch":
        assert ema[10] / level[10] < 0.5  # uncorrected, the EMA is far below its level right after a restart


def test_titles_and_labels_are_mathtext_not_raw_subscripts():
    fig = FIGURES["smoothness"]([("run", synthetic_table(steps=60))])
    texts = [fig.axes[0].get_title(), fig.axes[0].get_ylabel()]
    assert texts == ["‖∇ℓ($x_{t}$) − ∇ℓ($x_{t-1}$)‖ / ‖$x_{t}$ − $x_{t-1}$‖", r"$\hat{L}_{t}$"]
    plt.close(fig)


def test_rotation_geometry_draws_seeds_with_identical_values():
    """Seeds that give the same ‖H‖ (a fixed probe seed) have a mean one ulp off their min/max: no
    negative error bar (matplotlib refuses one, which stopped `make run`'s report)."""
    runs = []
    for label in ("adam", "adam_rotated"):
        for seed in range(3):
            columns = {"step": [0, 1], "hessian_l11_per_dim": [0.1, 0.1], "spectral_norm": [0.3, 0.3]}
            runs.append((label, pd.DataFrame(columns), {"seed": seed}))
    fig = figure_functions("rotation")["rotation_geometry"](runs)
    assert fig is not None
    plt.close(fig)


def test_relaxed_smoothness_scatter_uses_the_secant_smoothness_of_f_when_measured():
    """With full_smooth in the table the scatter shows the pairs the finding fits, labelled as such."""
    from optprobe.curvature.relaxed import relaxed_smoothness

    runs = _runs(["sgd"], seeds=1, steps=300)
    table = runs[0][1]
    table["full_smooth_grad_norm"] = np.linspace(2.0, 0.1, len(table))
    table["full_smooth"] = 1.0 + 3.0 * table["full_smooth_grad_norm"]
    fig = figure_functions("relaxed_smoothness")["relaxed_smoothness"](runs)
    fit = relaxed_smoothness(table["full_smooth_grad_norm"].to_numpy(), table["full_smooth"].to_numpy())
    assert _titles(fig)[0] == f"sgd: L0 = {fit.l0:.3g}, L1 = {fit.l1:.3g}"
    assert "secant" in fig.axes[0].get_ylabel()
    plt.close(fig)


def test_a_figure_column_is_one_a_metric_class_declares():
    """Figures name their columns through figures_base.column, which checks the stem against the metric
    classes' declared columns: a renamed metric column fails when the figures load, not as an empty plot."""
    from optprobe.errors import OptprobeError
    from optprobe.metrics.convexity import ConvexityGap
    from optprobe.report.figures_base import column

    assert column("inst_gap", "prev") == "inst_gap_prev" and "inst_gap" in ConvexityGap.columns
    assert column("loss") == "loss"
    with pytest.raises(OptprobeError, match="'inst_gapp', which no metric class declares"):
        column("inst_gapp", "prev")

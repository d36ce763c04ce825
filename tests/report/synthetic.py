"""Synthetic run tables and run directories with every column the Probe can write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

LAYERS = ("embed", "block0.attn", "block0.mlp", "head")
DENSITY_BINS = 30


def _ema(x: np.ndarray, beta: float) -> np.ndarray:
    out, e = np.empty_like(x), 0.0
    for i, v in enumerate(x):
        e = beta * e + (1 - beta) * (0.0 if np.isnan(v) else v)
        out[i] = e
    return out


def synthetic_table(
    steps: int = 300,
    epochs: int = 3,
    seed: int = 0,
    lr: float = 0.1,
    gap_shift: float = 0.3,
    curvature: bool = True,
) -> pd.DataFrame:
    """A deep-learning-like run: decaying loss, mostly-negative gaps, sharpness rising to 2/η."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    loss = 2.0 * np.exp(-t / 80) + 0.1 + 0.05 * rng.standard_normal(steps)
    gap = -np.abs(rng.lognormal(-3, 1.5, steps)) + gap_shift * 0.02 * rng.standard_normal(steps)
    gap[0] = np.nan
    smooth = 5 + 3 * (1 - np.exp(-t / 50)) + rng.gamma(2, 0.5, steps)
    smooth[0] = np.nan
    corr = rng.normal(-0.02, 0.05, steps)
    corr[0] = np.nan
    scale = rng.exponential(1.0, steps)
    corr_rs = corr / scale
    diff = corr_rs + rng.normal(0, 0.01, steps)
    epoch = t * epochs // steps
    table = pd.DataFrame(
        {
            "step": t,
            "epoch": epoch,
            "event": "step",
            "loss": loss,
            "lr": lr,
            "scale": scale,
            "inst_gap_prev": gap,
            "avg_gap_prev": pd.Series(gap).groupby(epoch).transform(lambda s: s.expanding().mean()),
            "exp_gap_prev_0.99": _ema(gap, 0.99),
            "exp_gap_prev_0.9": _ema(gap, 0.9),
            "inst_smooth_prev": smooth,
            "max_smooth_prev": pd.Series(smooth).groupby(epoch).cummax(),
            "exp_smooth_prev_0.99": _ema(smooth, 0.99),
            "update_corr": corr,
            "update_corr_rs": corr_rs,
            "loss_diff": diff,
            "cum_update_corr": np.nancumsum(corr),
            "cum_update_corr_rs": np.nancumsum(corr_rs),
            "cum_loss_diff": np.nancumsum(diff),
            "grad_norm": 1 + rng.gamma(2, 0.3, steps),
            "grad_l1": 300 * (1 + rng.gamma(2, 0.3, steps)),
            "grad_linf": 0.1 + rng.gamma(2, 0.01, steps),
            "param_norm": 10 + np.sqrt(t) / 5,
            "update_norm": 0.1 * rng.gamma(2, 0.5, steps),
        }
    )
    full = t % 20 == 0
    table.loc[full, "full_loss"] = 2.0 * np.exp(-t[full] / 80) + 0.1
    table.loc[full, "full_grad_norm"] = 2.0 * np.exp(-t[full] / 100) + 0.01
    table.loc[full, "grad_std"] = 1.0 * np.exp(-t[full] / 300)
    table.loc[full, "ref_full_loss"] = 0.08
    table.loc[full, "convexity_ratio"] = 0.5 + 0.2 * np.exp(-t[full] / 50)
    table.loc[full, "pl_ratio"] = (
        0.5 * table.loc[full, "full_grad_norm"] ** 2 / (table.loc[full, "full_loss"] - 0.08)
    )
    if curvature:
        curv = t % 50 == 0
        table.loc[curv, "sharpness"] = (2 / lr) * (1 - 0.8 * np.exp(-t[curv] / 60))
        table.loc[curv, "spectral_norm"] = table.loc[curv, "sharpness"]
        table.loc[curv, "hessian_l11_per_dim"] = 0.05 * table.loc[curv, "sharpness"]
        for i, layer in enumerate(LAYERS):
            table.loc[curv, f"r_med/{layer}"] = 3.0 * (i + 1) + rng.random(curv.sum())
        # the binned density of a bulk near 0 and an outlier moving out with t (metric spectral_density)
        points, top = np.linspace(-1.0, 3.0, DENSITY_BINS)[None, :], 1.0 + t[curv][:, None] / steps
        bump = np.exp(-0.5 * (points / 0.1) ** 2) + np.exp(-0.5 * ((points - top) / 0.1) ** 2)
        names = [f"density_bin{j}" for j in range(DENSITY_BINS)]
        table = table.join(pd.DataFrame(bump / 0.5, index=t[curv], columns=names))
        table.loc[curv, ["density_lo", "density_hi", "negative_mass"]] = [-1.0, 3.0, 0.45]
    return table


def write_run(run_dir: Path, table: pd.DataFrame, truncate_last: bool = False, **info: object) -> Path:
    """A run directory: ``metrics.jsonl`` (optionally with a half-written last line) and ``run.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({k: v for k, v in row.items() if not _missing(v)}) for row in table.to_dict("records")
    ]
    text = "".join(line + "\n" for line in lines)
    if truncate_last:
        text += lines[-1][: len(lines[-1]) // 2]
    (run_dir / "metrics.jsonl").write_text(text)
    run_info = {"probe_config": {"every": 1}, "model": {"parameters": 1234, "layers": list(LAYERS)}}
    run_info |= {"finished": not truncate_last, "environment": {"python": "3.11", "torch": "2.4"}, **info}
    (run_dir / "run.json").write_text(json.dumps(run_info))
    return run_dir


def _missing(value: object) -> bool:
    return isinstance(value, float) and np.isnan(value)

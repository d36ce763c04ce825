"""Jiang, Malik & Li: from the same initialisation, Adam reaches a more uniform Hessian diagonal than SGD+M.

Finding: at equal training loss, R_med = max_i |H_ii| / median_i |H_ii| (200 sampled coordinates per
layer) is smaller on the Adam trajectory than on the SGD+M one, in most layers (their Sec. 4, App. A.3).
Statistic: per seed, ρ = exp(mean over layers ℓ and shared loss levels L of log(R_med^SGDM / R_med^Adam)),
both runs measured the first time their curvature-batch loss fell to L (``r_med_level``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from optprobe.findings.base import Check, Criterion, Runs, SeedRun, across_seeds

#: z of the bootstrap interval the metric writes (r_med_low, r_med_high are its 2.5% and 97.5% points).
Z95 = 1.959963984540054


def log_ratios(adam: pd.DataFrame, sgdm: pd.DataFrame) -> pd.DataFrame:
    """Per (level, layer): log R_med^SGDM − log R_med^Adam and its bootstrap standard error, at the loss
    levels both tables reached."""
    a, s = _by_level(adam), _by_level(sgdm)
    rows = []
    for level in sorted(set(a.index) & set(s.index), reverse=True):
        for layer in sorted(set(_layers(a)) & set(_layers(s))):
            ra, rs = a.at[level, f"r_med/{layer}"], s.at[level, f"r_med/{layer}"]
            if not (ra > 0 and rs > 0 and math.isfinite(ra) and math.isfinite(rs)):
                continue
            se = math.hypot(_log_se(a, level, layer), _log_se(s, level, layer))
            gap = abs(s.at[level, "r_med_loss"] - a.at[level, "r_med_loss"])
            rows.append((level, layer, math.log(rs / ra), se, gap))
    return pd.DataFrame(rows, columns=["level", "layer", "log_ratio", "se", "loss_gap"])


def layer_type(layer: str) -> str:
    """The layer's role inside its repeated block: ``blocks.3.attn.qkv`` → ``attn.qkv``; a layer that is
    not inside a numbered block (``wte``, ``net.1``) is its own type."""
    parts = layer.split(".")
    last = max((i for i, part in enumerate(parts) if part.isdigit()), default=-1)
    return ".".join(parts[last + 1 :]) if 0 <= last < len(parts) - 1 else layer


def test(runs: Runs, *, min_ratio: float, min_fraction: float, adam: str = "adam", sgdm: str = "sgdm"
         ) -> list[Check]:  # fmt: skip
    """Checks: ρ > ``min_ratio`` and the fraction of layers with mean log ratio > 0 above ``min_fraction``."""
    pairs = _pairs(runs.get(adam, ()), runs.get(sgdm, ()))
    per_seed = [log_ratios(a.table, s.table) for a, s in pairs]
    ratio = across_seeds([math.exp(t.log_ratio.mean()) if len(t) else math.nan for t in per_seed])
    fraction = across_seeds([_fraction_above(t) for t in per_seed])
    n = ratio.n
    levels = sorted({lv for t in per_seed for lv in t.level}, reverse=True)
    where = (
        f"{sgdm} vs {adam}, same initialisation, {n} seeds, at the curvature-batch loss levels "
        f"{', '.join(f'{lv:g}' for lv in levels) or 'none shared'}"
    )
    return [
        Check(
            "ρ = geometric mean over layers and equal-loss levels of R_med(SGD+M) / R_med(Adam)",
            ratio,
            Criterion(">", min_ratio),
            f"{where}; {_sampling(per_seed)}; per layer type: {_by_type(per_seed)}",
        ),
        Check(
            "fraction of layers whose R_med(SGD+M) / R_med(Adam) > 1 (geometric mean over levels)",
            fraction,
            Criterion(">", min_fraction),
            f"{where}; largest loss mismatch at a shared level {_gap(per_seed)}",
        ),
    ]


def _by_level(table: pd.DataFrame) -> pd.DataFrame:
    if "r_med_level" not in table.columns:
        return pd.DataFrame(columns=["r_med_loss"])
    rows = table[np.isfinite(pd.to_numeric(table["r_med_level"], errors="coerce"))]
    return rows.drop_duplicates("r_med_level").set_index("r_med_level")


def _layers(table: pd.DataFrame) -> list[str]:
    return [c.split("/", 1)[1] for c in table.columns if c.startswith("r_med/")]


def _log_se(table: pd.DataFrame, level: float, layer: str) -> float:
    """Bootstrap standard error of log R_med from its 95% interval (NaN when it was not written)."""
    if f"r_med_low/{layer}" not in table or f"r_med_high/{layer}" not in table:
        return math.nan
    low, high = table.at[level, f"r_med_low/{layer}"], table.at[level, f"r_med_high/{layer}"]
    return (math.log(high) - math.log(low)) / (2 * Z95) if low > 0 and high > 0 else math.nan


def _pairs(adam: Sequence[SeedRun], sgdm: Sequence[SeedRun]) -> list[tuple[SeedRun, SeedRun]]:
    """Seed runs of the two labels with the same seed (the same initialisation)."""
    by_seed = {r.info.get("seed"): r for r in sgdm}
    return [(a, by_seed[a.info.get("seed")]) for a in adam if a.info.get("seed") in by_seed]


def _fraction_above(table: pd.DataFrame) -> float:
    if table.empty:
        return math.nan
    return float((table.groupby("layer").log_ratio.mean() > 0).mean())


def _sampling(per_seed: list[pd.DataFrame]) -> str:
    """The coordinate-sampling error of ρ within one seed: exp(1.96 · √(Σ se²) / m), median over seeds."""
    factors = [math.exp(Z95 * math.sqrt((t.se**2).sum()) / len(t)) for t in per_seed if t.se.notna().any()]
    if not factors:
        return "coordinate-sampling error not recorded"
    return f"coordinate-sampling 95% error of ρ within a seed ×/÷ {float(np.median(factors)):.3g} (bootstrap)"


def _by_type(per_seed: list[pd.DataFrame]) -> str:
    """ρ per layer type: geometric mean over levels and blocks, then its across-seed interval."""
    parts = []
    types = sorted({layer_type(layer) for t in per_seed for layer in t.layer})
    for kind in types:
        values = []
        for t in per_seed:
            rows = t[t.layer.map(layer_type) == kind]
            values.append(math.exp(rows.log_ratio.mean()) if len(rows) else math.nan)
        est = across_seeds(values)
        parts.append(f"{kind} {est.value:.3g} [{est.low:.3g}, {est.high:.3g}]")
    return "; ".join(parts) or "none"


def _gap(per_seed: list[pd.DataFrame]) -> str:
    gaps = [float(t.loss_gap.max()) for t in per_seed if len(t)]
    return f"{max(gaps):.3g}" if gaps else "n/a"

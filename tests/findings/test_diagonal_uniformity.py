"""The diagonal_uniformity finding test on synthetic tables whose answer is known."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from optprobe.findings import Outcome
from optprobe.findings import diagonal_uniformity as finding
from optprobe.findings.diagonal_uniformity import Z95, layer_type, log_ratios

LAYERS = ("wte", "blocks.0.attn.qkv", "blocks.1.attn.qkv", "blocks.0.mlp.fc")
CRITERION = {"min_ratio": 1.0, "min_fraction": 0.5}


@dataclass
class FakeRun:
    table: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def table(r_med: dict[float, dict[str, float]], rel_width: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """A run measured at each loss level (step = its index × 10, NaN rows between), bootstrap bounds at
    r_med ×/÷ (1 + rel_width)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, (level, values) in enumerate(r_med.items()):
        rows.append({"step": 10 * k + 5, "loss": level + 0.3})  # a step without a measurement
        row = {"step": 10 * k + 10, "loss": level, "r_med_level": level,
               "r_med_loss": level - 0.01 * rng.random()}  # fmt: skip
        for layer, v in values.items():
            row |= {f"r_med/{layer}": v, f"r_med_low/{layer}": v / (1 + rel_width),
                    f"r_med_high/{layer}": v * (1 + rel_width)}  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def runs(factor: float, seeds: int = 3, extra_adam_level: bool = False) -> dict[str, list[FakeRun]]:
    """Adam's R_med drawn at random; SGD+M's = factor × Adam's × noise, at levels 1.0 and 0.5."""
    out: dict[str, list[FakeRun]] = {"adam": [], "sgdm": []}
    for s in range(seeds):
        rng = np.random.default_rng(100 + s)
        adam = {lv: {layer: float(rng.uniform(2, 50)) for layer in LAYERS} for lv in (1.0, 0.5)}
        sgdm = {lv: {la: v * factor * float(rng.uniform(0.8, 1.25)) for la, v in vals.items()}
                for lv, vals in adam.items()}  # fmt: skip
        if extra_adam_level:  # a level only Adam reached: not an equal-loss comparison, left out
            adam[0.25] = {layer: 1e6 for layer in LAYERS}
        out["adam"].append(FakeRun(table(adam, seed=s), {"seed": s}))
        out["sgdm"].append(FakeRun(table(sgdm, seed=s + 7), {"seed": s}))
    return out


def test_reproduces_when_sgdm_is_less_uniform_at_equal_loss():
    ratio, fraction = finding.test(runs(2.0), **CRITERION)
    assert ratio.outcome is Outcome.REPRODUCED and fraction.outcome is Outcome.REPRODUCED
    assert 1.6 < ratio.estimate.value < 2.5 and fraction.estimate.value == 1.0
    assert ratio.estimate.n == 3 and "3 seeds" in ratio.detail and "1, 0.5" in ratio.detail


def test_not_reproduced_when_adam_is_less_uniform():
    ratio, fraction = finding.test(runs(0.5), **CRITERION)
    assert ratio.outcome is Outcome.NOT_REPRODUCED and fraction.outcome is Outcome.NOT_REPRODUCED


def test_one_seed_is_inconclusive_and_no_shared_level_is_not_measured():
    ratio, _ = finding.test(runs(2.0, seeds=1), **CRITERION)
    assert ratio.outcome is Outcome.INCONCLUSIVE
    one = runs(2.0)
    for run in one["sgdm"]:
        run.table["r_med_level"] = run.table["r_med_level"] * 0.9  # never the same level as Adam
    ratio, fraction = finding.test(one, **CRITERION)
    assert ratio.outcome is Outcome.NOT_MEASURED and fraction.outcome is Outcome.NOT_MEASURED


def test_statistic_equals_direct_recomputation_on_shared_levels_only():
    data = runs(1.7, extra_adam_level=True)
    ratio, fraction = finding.test(data, **CRITERION)
    per_seed, fractions, factors = [], [], []
    for adam, sgdm in zip(data["adam"], data["sgdm"], strict=True):
        a = adam.table.dropna(subset=["r_med_level"]).set_index("r_med_level")
        s = sgdm.table.dropna(subset=["r_med_level"]).set_index("r_med_level")
        logs = np.array([[math.log(s.at[lv, f"r_med/{la}"] / a.at[lv, f"r_med/{la}"]) for la in LAYERS]
                         for lv in (1.0, 0.5)])  # fmt: skip
        per_seed.append(math.exp(logs.mean()))
        fractions.append(float((logs.mean(axis=0) > 0).mean()))
        se = math.sqrt(2) * math.log(1.2 ** 2) / (2 * Z95)  # both runs' bootstrap bounds at ×/÷ 1.2
        factors.append(math.exp(Z95 * math.sqrt(logs.size * se**2) / logs.size))
    assert ratio.estimate.value == pytest.approx(np.mean(per_seed), rel=1e-12)
    assert fraction.estimate.value == pytest.approx(np.mean(fractions), rel=1e-12)
    sampling = float(re.search(r"×/÷ ([\d.]+)", ratio.detail).group(1))
    assert sampling == pytest.approx(np.median(factors), rel=1e-2)
    assert set(log_ratios(data["adam"][0].table, data["sgdm"][0].table).level) == {1.0, 0.5}


def test_seeds_are_paired_by_seed_not_by_position():
    data = runs(2.0)
    data["sgdm"].reverse()
    expected = finding.test(runs(2.0), **CRITERION)[0].estimate.value
    assert finding.test(data, **CRITERION)[0].estimate.value == pytest.approx(expected)


def test_layer_types_drop_the_block_index():
    assert layer_type("blocks.3.attn.qkv") == "attn.qkv"
    assert layer_type("wte") == "wte" and layer_type("net.1") == "net.1"

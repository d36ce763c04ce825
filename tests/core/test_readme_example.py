"""The README's metric-of-your-own example, run exactly as printed, measures what it says."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _example(marker: str) -> str:
    found = re.search(rf"<!-- readme-example: {marker} -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert found is not None, f"README.md lost its {marker!r} example"
    return found.group(1)


def test_the_readme_custom_metric_runs_in_a_plain_loop(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    exec(compile(_example("custom-metric"), "README.md", "exec"), namespace)
    assert "grad_update_cos" in capsys.readouterr().out
    table = namespace["probe"].table().set_index("step")
    assert len(table) == 20 and math.isnan(table.loc[0, "grad_update_cos"])  # no Δ_0
    for t in range(1, 20):
        row = table.loc[t]
        expected = row["update_corr"] / (row["grad_norm"] * row["update_norm"])
        assert row["grad_update_cos"] == pytest.approx(expected, rel=1e-12)
        assert -1.0 <= row["grad_update_cos"] <= 1.0
    info = json.loads((tmp_path / "runs" / "custom" / "run.json").read_text())
    assert info["metric_classes"] == ["Norms", "UpdateCorrelation", "GradUpdateCosine"]
    assert info["probe_config"]["metrics"] == ["norms", "correlation"]

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

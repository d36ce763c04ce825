"""The finding framework: estimates across seeds, criteria, combined verdicts, and finding-test lookup."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from optprobe.findings import (
    Check,
    Criterion,
    Estimate,
    Outcome,
    across_seeds,
    combine,
    evaluate,
    finding_test,
    per_seed,
)

R, N, I, M = Outcome.REPRODUCED, Outcome.NOT_REPRODUCED, Outcome.INCONCLUSIVE, Outcome.NOT_MEASURED


def test_across_seeds_is_the_student_t_interval_of_scipy():
    values = [0.31, 0.27, 0.4, 0.35]
    est = across_seeds(values)
    low, high = stats.t.interval(0.95, 3, np.mean(values), stats.sem(values))
    assert (est.value, est.low, est.high, est.n) == pytest.approx((np.mean(values), low, high, 4), rel=1e-12)
    with_nan = across_seeds([*values, math.nan, math.inf])  # non-finite seeds are dropped
    assert (with_nan.value, with_nan.n) == (est.value, 4)


def test_one_seed_has_no_interval_and_none_is_not_measured():
    one = across_seeds([2.0])
    assert (one.value, one.low, one.high, one.n) == (2.0, -math.inf, math.inf, 1)
    assert Criterion("<", 5.0).judge(one) is I  # one seed cannot separate a statistic from its bound
    none = across_seeds([math.nan])
    assert not none.measured and none.n == 0 and Criterion("<", 5.0).judge(none) is M


@pytest.mark.parametrize(
    ("op", "bound", "low", "high", "outcome"),
    [
        ("<", 1.0, 0.2, 0.8, R), ("<", 1.0, 1.0, 1.5, N), ("<", 1.0, 0.5, 1.0, I), ("<", 1.0, 0.9, 1.1, I),
        (">", 0.0, 0.1, 0.3, R), (">", 0.0, -0.3, 0.0, N), (">", 0.0, 0.0, 0.3, I), (">", 0.0, -0.1, 0.1, I),
        ("in", (0.9, 1.1), 0.95, 1.05, R), ("in", (0.9, 1.1), 0.9, 1.1, R), ("in", (0.9, 1.1), 1.2, 1.3, N),
        ("in", (0.9, 1.1), 0.5, 0.8, N), ("in", (0.9, 1.1), 0.85, 1.0, I), ("in", (0.9, 1.1), 0.5, 1.5, I),
    ],
)  # fmt: skip
def test_criterion_judges_the_whole_interval(op, bound, low, high, outcome):
    est = Estimate((low + high) / 2, low, high, 3)
    assert Criterion(op, bound).judge(est) is outcome
    assert Check("s", est, Criterion(op, bound)).outcome is outcome


def test_criterion_rejects_unknown_operators_and_prints_itself():
    with pytest.raises(ValueError, match="criterion op"):
        Criterion("<=", 1.0)
    assert [str(Criterion("<", 0.5)), str(Criterion(">", 2)), str(Criterion("in", (0.9, 1.1)))] == [
        "< 0.5", "> 2", "in [0.9, 1.1]",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("outcomes", "combined"),
    [((), M), ((R,), R), ((R, R), R), ((R, N), N), ((I, N, M), N), ((R, I), I), ((R, M), M), ((I, M), M)],
)
def test_combine_any_failure_fails_all_reproduced_reproduces(outcomes, combined):
    assert combine(list(outcomes)) is combined


class _SeedRun:
    def __init__(self, final: float, seed: int) -> None:
        self.table = pd.DataFrame({"step": [0, 1], "loss": [1.0, final]})
        self.info = {"seed": seed}


def test_per_seed_and_evaluate_call_the_experiments_test_with_its_criterion(monkeypatch):
    runs = {"a": [_SeedRun(v, s) for s, v in enumerate((0.1, 0.2, 0.15))]}
    est = per_seed(runs["a"], lambda r: r.table["loss"].iloc[-1])
    assert est == across_seeds([0.1, 0.2, 0.15])

    def test(runs, *, bound):
        final = per_seed(runs["a"], lambda r: r.table["loss"].iloc[-1])
        return [Check("final loss", final, Criterion("<", bound))]

    module = types.ModuleType("optprobe.findings.fake_framework")
    module.test = test
    monkeypatch.setitem(sys.modules, "optprobe.findings.fake_framework", module)
    result = evaluate("mine", "loss goes down", runs, {"bound": 0.5}, test_name="fake_framework")
    assert result.experiment == "mine" and result.outcome is R and result.checks[0].estimate == est
    assert evaluate("mine", "", runs, {"bound": 0.01}, test_name="fake_framework").outcome is N
    assert evaluate("mine", "", runs, {"bound": 0.12}, test_name="fake_framework").outcome is I  # straddles
    assert evaluate("no_such_experiment", "", runs, {}).outcome is M  # no test: not measured, no checks
    assert finding_test("base") is None and finding_test("not-an-identifier") is None


def test_a_run_the_test_needs_but_the_runs_lack_is_named_not_a_bare_key_error(monkeypatch, tmp_path):
    from optprobe.findings import MissingRun
    from optprobe.report.findings import experiment_findings

    def test(runs):
        return [Check("clipped", per_seed(runs["clipped"], lambda r: 0.0), Criterion("<", 1.0))]

    module = types.ModuleType("optprobe.findings.fake_missing")
    module.test = test
    monkeypatch.setitem(sys.modules, "optprobe.findings.fake_missing", module)
    runs = {"sgd": [_SeedRun(0.1, 0)]}
    with pytest.raises(MissingRun, match="no run 'clipped' among these run directories"):
        evaluate("mine", "", runs, {}, test_name="fake_missing")
    info = {"experiment": "mine", "label": "sgd", "seed": 0, "finding": "f", "criterion": {"x": 1},
            "finding_test": "fake_missing"}
    run = types.SimpleNamespace(table=runs["sgd"][0].table, info=info, experiment="mine", label="sgd")
    monkeypatch.setattr(module, "test", lambda runs, x: test(runs))
    (item,) = experiment_findings([run])
    assert item.outcome is M and item.note.startswith("no run 'clipped'")

"""Experiment configs: typed loading, overrides, and clear errors for every malformed input."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optprobe.errors import OptprobeError
from optprobe.experiments.config import experiment_from_dict, load_experiment
from optprobe.probe_config import ProbeConfig

BASE = {
    "name": "demo",
    "defaults": {"task": "least_squares", "optimizer": "sgd", "lr": 0.1, "epochs": 2},
    "quick": {"epochs": 1},
    "runs": [{"label": "a"}, {"label": "b", "lr": 0.2, "probe": {"every": 5}}],
}


def test_quick_settings_override_a_runs_own_length():
    """local_convexity's GPT runs set max_steps = 300; --quick must still cut them to its 20 steps."""
    from optprobe.experiments.registry import get_experiment

    runs = {run.label: run for run in get_experiment("local_convexity", quick=True).runs}
    assert runs["gpt_adamw"].max_steps == runs["cnn_sgdm"].max_steps == 20
    assert get_experiment("local_convexity").runs[3].max_steps == 300


def test_defaults_runs_quick_and_overrides_merge_in_that_order():
    exp = experiment_from_dict(
        BASE, ["probe.per_layer=true", "runs.b.lr=0.3", "task_options.n=64"], quick=True
    )
    a, b = exp.runs
    assert (a.lr, b.lr) == (0.1, 0.3)
    assert a.epochs == b.epochs == 1
    assert b.probe.every == 5 and a.probe.every == 1
    assert a.probe.per_layer and b.probe.per_layer
    assert a.task_options == {"n": 64}
    assert isinstance(a.lr, float)


def _as_toml(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(ProbeConfig)])
def test_every_probe_config_field_is_a_key_of_the_probe_table(name):
    """The probe table is ProbeConfig (issue 17: a copy of it refused replay_rng): each field, written with
    its own default, is accepted and reaches the Probe's config."""
    default = getattr(ProbeConfig(), name)
    exp = experiment_from_dict({**BASE, "runs": [{"label": "a", "probe": {name: _as_toml(default)}}]})
    assert getattr(exp.runs[0].probe.probe_config(run_seed=0), name) == default


def test_probe_table_settings_reach_the_probe_and_its_seed_is_the_runs_unless_set():
    runs = [{"label": "a", "seed": 3, "probe": {"replay_rng": False}}, {"label": "b", "probe": {"seed": 7}}]
    a, b = experiment_from_dict({**BASE, "runs": runs}).runs
    assert a.probe.probe_config(a.seed).replay_rng is False and a.probe.probe_config(a.seed).seed == 3
    assert b.probe.probe_config(b.seed).seed == 7 and b.probe.probe_config(b.seed).replay_rng is True
    assert a.probe.metrics == ProbeConfig().metrics  # one default metric list


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["lr=fast"], "lr must be of type float"),
        (["epochz=3"], "did you mean 'epochs'"),
        (["probe.evry=3"], "did you mean 'every'"),
        (["lr"], "expects key=value"),
        (["runs.zzz.lr=0.1"], "runs are"),
        (["schedule=linear"], "schedule must be one of"),
        (["lr=-1"], "lr must be a positive finite number"),
        (["lr=nan"], "lr must be a positive finite number"),
        (["lr=inf"], "lr must be a positive finite number"),
        (["label=x"], "runs share the label"),
        (["epochs=0"], "set epochs or max_steps"),
        (["probe.metrics=[1, 2]"], r"metrics\[0\] must be of type str"),
        (["random_scaling=1"], "random_scaling must be of type bool"),
        (["probe.every=0"], "run 'a': probe: every must be a positive number"),
        (["probe.window=epochs"], "window must be 'epoch' or 'none'"),
        (["probe.seed=x"], "seed must be an integer"),
    ],
)
def test_bad_overrides_name_the_key_and_what_was_expected(overrides, message):
    with pytest.raises(OptprobeError, match=message):
        experiment_from_dict(BASE, overrides)


def test_malformed_toml_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("name = 'x'\n[defaults\nlr = 1\n")
    with pytest.raises(OptprobeError, match="not valid TOML"):
        load_experiment(path)
    with pytest.raises(OptprobeError, match="does not exist"):
        load_experiment(tmp_path / "missing.toml")


_values = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.text(max_size=8))
_keys = st.sampled_from(["lr", "epochs", "seed", "probe.every", "probe.betas", "schedule", "zz", "task", ""])


@settings(max_examples=150, deadline=None)
@given(key=_keys, value=_values)
def test_fuzzed_overrides_either_apply_or_raise_optprobe_error(key, value):
    text = (
        str(value).lower()
        if isinstance(value, bool)
        else repr(value)
        if isinstance(value, str)
        else str(value)
    )
    try:
        exp = experiment_from_dict(BASE, [f"{key}={text}"])
    except OptprobeError:
        return
    assert len(exp.runs) == 2


_tables = st.dictionaries(
    st.sampled_from(["task", "lr", "epochs", "label", "probe", "schedule"]), _values, max_size=3
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from(["defaults", "runs", "quick", "title", "minutes", "order", "x"]),
    value=st.one_of(_values, _tables, st.lists(st.one_of(_tables, _values), max_size=3)),
)
def test_fuzzed_experiment_tables_never_crash_with_anything_but_optprobe_error(key, value):
    with contextlib.suppress(OptprobeError):
        experiment_from_dict({"name": "fuzz", key: value})

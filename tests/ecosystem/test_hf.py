"""Hugging Face Trainer: a tiny GPT-2 trained with gradient accumulation and clipping, probed end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="optional extra: pip install transformers")

from optprobe.integrations.hf import attach  # noqa: E402


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int = 32, length: int = 16) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 64, (n, length), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def test_trainer_run_is_probed_before_clipping_with_accumulation(tmp_path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32)
    model = transformers.GPT2LMHeadModel(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), per_device_train_batch_size=4, gradient_accumulation_steps=2,
        max_steps=6, learning_rate=1e-3, max_grad_norm=0.5, logging_steps=1, report_to=[], use_cpu=True,
        save_strategy="no", seed=0,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tokens())
    probe = attach(trainer, out_dir=tmp_path / "probe")
    trainer.train()
    table = probe.table().query("event == 'step'")
    assert list(table["step"]) == list(range(6))  # one probe step per optimizer step
    identity = table["loss_diff"] - table["update_corr"]
    np.testing.assert_allclose(table["inst_gap_prev"].iloc[1:], identity.iloc[1:], rtol=1e-5, atol=1e-7)
    # the Trainer logs the pre-clipping norm; the probe saw the same gradient (clipping comes after)
    hf_norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
    np.testing.assert_allclose(table["grad_norm"], hf_norms, rtol=1e-4)
    assert max(hf_norms) > 0.5  # clipping was active, so the check above could fail
    assert any("optprobe/norms/grad_norm" in h for h in trainer.state.log_history)  # the sinks' names


def test_fp16_is_refused_with_a_clear_message(tmp_path):
    from optprobe.errors import OptprobeError

    class Args:
        fp16 = True

    class FakeTrainer:
        args = Args()

    with pytest.raises(OptprobeError, match="bf16"):
        attach(FakeTrainer(), out_dir=tmp_path)


def _recorded_trainer(tmp_path, trainer_class=None, gradient_accumulation_steps=2, **kwargs):
    """A tiny GPT-2 Trainer with a Probe; ``losses`` gets each micro-batch loss training_step returns."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32)
    model = transformers.GPT2LMHeadModel(config)
    extra = {k: kwargs.pop(k) for k in ("compute_loss_func",) if k in kwargs}
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), per_device_train_batch_size=4,
        gradient_accumulation_steps=gradient_accumulation_steps, max_steps=3, learning_rate=1e-3,
        report_to=[], use_cpu=True, save_strategy="no", seed=0, disable_tqdm=True, **kwargs,
    )  # fmt: skip
    trainer_class = trainer_class or transformers.Trainer
    trainer = trainer_class(model=model, args=args, train_dataset=_Tokens(), **extra)
    probe = attach(trainer, out_dir=tmp_path / "probe")
    training_step, losses = trainer.training_step, []

    def recording_step(model, inputs, num_items_in_batch=None):
        loss = training_step(model, inputs, num_items_in_batch)
        losses.append(float(loss))
        return loss

    trainer.training_step = recording_step
    return trainer, probe, losses


def _assert_probe_loss_is_the_trainers(probe, losses, gradient_accumulation_steps=2):
    """The probe's loss at x_t is the objective whose gradient .grad holds: Σ training_step's losses."""
    table = probe.table().query("event == 'step'")
    k = gradient_accumulation_steps
    objective = [sum(losses[i : i + k]) for i in range(0, len(losses), k)]
    assert len(table) == len(objective) == 3
    np.testing.assert_allclose(table["loss"], objective, rtol=1e-6, atol=1e-7)
    assert table["loss_diff"].iloc[1:].notna().all()  # the pass at x_{t-1} ran too


def _shifted_cross_entropy(outputs, labels, num_items_in_batch=None):
    logits = outputs["logits"][:, :-1].float()
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), reduction="sum"
    )
    return loss / num_items_in_batch


@pytest.mark.parametrize(
    "loss_option",
    [{"label_smoothing_factor": 0.1}, {"compute_loss_func": _shifted_cross_entropy}],
    ids=["label_smoothing", "compute_loss_func"],
)
def test_loss_options_that_pop_labels_are_probed_at_every_point(tmp_path, loss_option):
    # Trainer.compute_loss pops "labels" from the dict it is given; the probe evaluates each micro-batch at
    # x_t and again at x_{t-1}, so each evaluation must see the labels
    trainer, probe, losses = _recorded_trainer(tmp_path, **loss_option)
    trainer.train()
    _assert_probe_loss_is_the_trainers(probe, losses)


@pytest.mark.parametrize("scaled", [False, True, None])
def test_probe_loss_follows_loss_is_scaled_for_ga(tmp_path, scaled):
    # GPT-2 takes num_items_in_batch, so by default (None) its loss counts as scaled for accumulation; a
    # subclass's loss_is_scaled_for_ga overrides that in training_step, and so in the probe's loss
    class Trainer(transformers.Trainer):
        loss_is_scaled_for_ga = scaled

    trainer, probe, losses = _recorded_trainer(tmp_path, trainer_class=Trainer)
    trainer.train()
    _assert_probe_loss_is_the_trainers(probe, losses)


def test_full_batch_metrics_run_on_plain_evaluation_batches(tmp_path):
    """eval_loader batches are single input dicts, not optimizer-step windows: F is their mean loss."""
    from optprobe.probe import ProbeConfig

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    model = transformers.GPT2LMHeadModel(config)
    ids = _Tokens().ids[:8]
    eval_batch = {"input_ids": ids, "labels": ids}
    with torch.no_grad():
        initial = float(model(**eval_batch).loss)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), per_device_train_batch_size=4, gradient_accumulation_steps=2,
        max_steps=2, learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no", seed=0,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tokens())
    probe = attach(trainer, out_dir=tmp_path / "probe", eval_loader=[eval_batch],
                   config=ProbeConfig(full_batch_every=1))  # fmt: skip
    trainer.train()
    steps = probe.table().query("event == 'step'")
    assert steps["full_loss"].iloc[0] == pytest.approx(initial, rel=1e-5)  # F at x_0


def test_a_model_init_trainer_is_refused_rather_than_probing_a_stale_model(tmp_path):
    """model_init builds a new model in every train(): the Probe would measure the one attach() saw."""
    from optprobe.errors import OptprobeError

    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), per_device_train_batch_size=4, max_steps=2, report_to=[],
        use_cpu=True, save_strategy="no", seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model_init=lambda: transformers.GPT2LMHeadModel(config), args=args, train_dataset=_Tokens()
    )
    attach(trainer, out_dir=tmp_path / "probe")
    with pytest.raises(OptprobeError, match="model_init"):
        trainer.train()


def test_a_wandb_sink_on_the_trainers_own_wandb_run_keeps_every_value(tmp_path, monkeypatch):
    """HF's WandbCallback logs to the same run without ``step=``, so W&B's own step runs ahead of the
    Probe's: the sink's values must still reach the run's history (read back from the offline run file),
    each with its Probe step under ``optprobe/step``."""
    pytest.importorskip("wandb", reason="optional extra: pip install wandb")
    from wandb_files import history, metric_definitions

    from optprobe.sinks import WandbSink

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), per_device_train_batch_size=4, max_steps=4, logging_steps=1,
        report_to=["wandb"], use_cpu=True, save_strategy="no", seed=0, disable_tqdm=True,
    )  # fmt: skip
    # the run the Trainer's WandbCallback then logs to as well (explicit dir: wandb keeps the first setup's)
    sink = WandbSink(project="optprobe-test", mode="offline", dir=str(tmp_path))
    model = transformers.GPT2LMHeadModel(config)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tokens())
    probe = attach(trainer, out_dir=tmp_path / "probe", sinks=[sink])
    trainer.train()  # the Probe closes the sink, which finishes the run it started
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    rows = history(run_file)
    assert any("train/loss" in r for r in rows), "the Trainer's own values are in the same run"
    ours = {r["optprobe/step"]: r for r in rows if "optprobe/step" in r}
    table = probe.table().query("event == 'step'")
    assert sorted(ours) == list(table["step"]) == [0, 1, 2, 3]
    for step, gap, norm in table[["step", "inst_gap_prev", "grad_norm"]].itertuples(index=False):
        assert ours[step]["optprobe/norms/grad_norm"] == pytest.approx(norm, rel=1e-12)
        if step > 0:
            assert ours[step]["optprobe/convexity/inst_gap_prev"] == pytest.approx(gap, rel=1e-12)
    globs = {m.glob_name: m.step_metric for m in metric_definitions(run_file) if m.glob_name}
    assert globs["optprobe/*"] == "optprobe/step"  # W&B plots the values against the Probe's steps


def _logged_trainer(tmp_path, **attach_kwargs):
    """A tiny GPT-2 Trainer that logs every 2 of its 5 steps (and its first), with a Probe attached."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), per_device_train_batch_size=4, max_steps=5, logging_steps=2,
        logging_first_step=True, report_to=[], use_cpu=True, save_strategy="no", seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=transformers.GPT2LMHeadModel(config), args=args, train_dataset=_Tokens()
    )
    probe = attach(trainer, out_dir=tmp_path / "probe", **attach_kwargs)
    trainer.train()
    return trainer, probe.table().query("event == 'step'").set_index("step")


def test_attach_logs_on_the_trainers_logging_steps_by_default(tmp_path):
    """The optprobe values join the Trainer's own log dicts (steps 1, 2, 4 of 5 here), no extra dict;
    each dict holds the values of the last optimizer step (Probe step = Trainer step − 1)."""
    trainer, table = _logged_trainer(tmp_path)
    ours = [h for h in trainer.state.log_history if "optprobe/norms/grad_norm" in h]
    assert [h["step"] for h in ours] == [1, 2, 4]
    assert all("loss" in h for h in ours)  # inside the Trainer's training logs, not dicts of their own
    for h in ours:
        expected = table.loc[h["step"] - 1, "grad_norm"]
        assert h["optprobe/norms/grad_norm"] == pytest.approx(expected, rel=1e-12)
    gap = ours[-1]["optprobe/convexity/inst_gap_prev"]
    assert gap == pytest.approx(table.loc[3, "inst_gap_prev"], rel=1e-12)
    assert list(table.index) == list(range(5))  # the table still has every step


def test_attach_can_log_every_measured_step(tmp_path):
    trainer, table = _logged_trainer(tmp_path, log_every=1)
    ours = [h for h in trainer.state.log_history if "optprobe/norms/grad_norm" in h]
    assert [h["optprobe/norms/grad_norm"] for h in ours] == pytest.approx(list(table["grad_norm"]), rel=1e-12)
    assert len([h for h in trainer.state.log_history if "loss" in h]) == 3  # the Trainer's cadence is kept


def test_attach_logs_at_epoch_ends_with_an_epoch_logging_strategy(tmp_path):
    """logging_strategy="epoch": the epoch end's full-batch row joins the Trainer's epoch log."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32)
    ids = _Tokens().ids[:8]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), per_device_train_batch_size=8, num_train_epochs=2,
        logging_strategy="epoch", report_to=[], use_cpu=True, save_strategy="no", seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=transformers.GPT2LMHeadModel(config), args=args, train_dataset=_Tokens()
    )
    probe = attach(trainer, out_dir=tmp_path / "probe", eval_loader=[{"input_ids": ids, "labels": ids}])
    trainer.train()
    ours = [h for h in trainer.state.log_history if "optprobe/norms/grad_norm" in h]
    assert [h["step"] for h in ours] == [4, 8] and all("loss" in h for h in ours)
    epoch_ends = probe.table().query("event == 'epoch_end'")["full_loss"]
    assert [h["optprobe/fullbatch/full_loss"] for h in ours] == pytest.approx(list(epoch_ends), rel=1e-12)

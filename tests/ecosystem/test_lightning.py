"""Lightning: a dropout linear model trained with accumulation and clipping, probed end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch", reason="optional extra: pip install lightning")

from optprobe.integrations.lightning import OptprobeCallback  # noqa: E402


class DropoutRegression(pl.LightningModule):
    """Squared loss of a linear model behind input dropout: convex in the weights for a fixed mask."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(0.3), nn.Linear(6, 1))
        self.pre_clip_norms: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = ((self.net(x).squeeze(-1) - y) ** 2).mean()
        self.log("train_loss", loss)
        return loss

    def on_before_optimizer_step(self, optimizer):  # runs after the callbacks' hook, before clipping
        norms = [p.grad.norm() ** 2 for p in self.parameters() if p.grad is not None]
        self.pre_clip_norms.append(float(torch.stack(norms).sum().sqrt()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_lightning_fit_is_probed_with_replayed_dropout_and_accumulation(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randn(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    module = DropoutRegression()
    callback = OptprobeCallback(out_dir=tmp_path / "probe")
    trainer = pl.Trainer(max_epochs=2, accumulate_grad_batches=2, gradient_clip_val=0.1, accelerator="cpu",
                         callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, loader)
    table = callback.probe.table()
    steps = table.query("event == 'step'")
    assert len(steps) == 2 * 64 // 16  # one probe step per optimizer step
    assert steps["inst_gap_prev"].iloc[1:].max() <= 1e-6  # same dropout masks at x_{t-1}: convex, gap ≤ 0
    np.testing.assert_allclose(steps["grad_norm"], module.pre_clip_norms, rtol=1e-5)
    assert max(module.pre_clip_norms) > 0.1  # clipping was active: the check above could fail
    assert (table["event"] == "epoch_end").sum() == 0  # no eval_loader, so no epoch-end rows
    # the trainer's logger gets the last step's values under the tracker sinks' names
    logged = float(trainer.callback_metrics["optprobe/norms/grad_norm"])
    assert logged == pytest.approx(steps["grad_norm"].iloc[-1], rel=1e-6)


def _squared_loss(module, batch):
    x, y = batch
    return ((module.net(x).squeeze(-1) - y) ** 2).mean()


class RecordingRegression(pl.LightningModule):
    """Records every training micro-batch loss and, at each optimizer step, x_t and the window's batches."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(6, 1))
        self.losses: list[float] = []
        self.window: list = []
        self.steps: list[tuple[list, dict]] = []

    def training_step(self, batch, batch_idx):
        loss = _squared_loss(self, batch)
        self.losses.append(float(loss.detach()))
        self.window.append(batch)
        return loss

    def on_before_optimizer_step(self, optimizer):
        point = {k: v.detach().clone() for k, v in self.state_dict().items()}
        self.steps.append((self.window, point))
        self.window = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _fit(tmp_path, module, dataset, accumulate=2, probed=True):
    callbacks = [OptprobeCallback(loss_fn=_squared_loss, out_dir=tmp_path / "probe")] if probed else []
    trainer = pl.Trainer(max_epochs=1, accumulate_grad_batches=accumulate, accelerator="cpu",
                         callbacks=callbacks, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, torch.utils.data.DataLoader(dataset, batch_size=8))
    return callbacks[0].probe.table().query("event == 'step'") if probed else None


def _objectives(module, accumulate=2):
    """Per optimizer step: Σ micro-batch losses / accumulate_grad_batches, what Lightning backpropagates."""
    sizes = [len(window) for window, _ in module.steps]
    starts = np.cumsum([0, *sizes])
    return [sum(module.losses[a:b]) / accumulate for a, b in zip(starts[:-1], starts[1:], strict=True)]


def test_last_short_accumulation_window_is_measured_on_the_backpropagated_objective(tmp_path):
    # 5 batches with accumulate_grad_batches=2: the last window holds one micro-batch, whose loss Lightning
    # still divides by 2, so .grad is ∇(ℓ_5 / 2) and so must be the probe's loss, at x_t and at x_{t-1}
    torch.manual_seed(0)
    module = RecordingRegression()
    table = _fit(tmp_path, module, torch.utils.data.TensorDataset(torch.randn(40, 6), torch.randn(40)))
    assert [len(window) for window, _ in module.steps] == [2, 2, 1]
    np.testing.assert_allclose(table["loss"], _objectives(module), rtol=1e-6, atol=1e-7)
    for t in range(1, len(module.steps)):  # ℓ(x_t) − ℓ(x_{t-1}) on step t's window, scaled the same way
        window = module.steps[t][0]
        at = []
        for _, point in (module.steps[t], module.steps[t - 1]):
            module.load_state_dict(point)
            with torch.no_grad():
                at.append(float(sum(_squared_loss(module, batch) for batch in window)) / 2)
        np.testing.assert_allclose(table["loss_diff"].iloc[t], at[0] - at[1], rtol=1e-5, atol=1e-7)


class _Augmented(torch.utils.data.Dataset):
    """Draws from the global torch RNG in __getitem__, as random augmentation does (num_workers=0)."""

    def __init__(self) -> None:
        self.x, self.y = torch.randn(48, 6), torch.randn(48)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn(6), self.y[i]


def test_dropout_is_replayed_per_micro_batch_when_the_loader_draws_random_numbers(tmp_path):
    # Lightning fetches micro-batch i+1 (drawing augmentation noise) before micro-batch i's forward, so one
    # RNG state per window replays the wrong dropout masks from the window's second micro-batch on
    torch.manual_seed(0)
    module = RecordingRegression(dropout=0.5)
    table = _fit(tmp_path, module, _Augmented())
    assert [len(window) for window, _ in module.steps] == [2, 2, 2]
    np.testing.assert_allclose(table["loss"], _objectives(module), rtol=1e-6, atol=1e-7)
    assert table["inst_gap_prev"].iloc[1:].max() <= 1e-6  # the training masks at x_{t-1}: convex, gap ≤ 0
    # the replay rewinds the RNG only inside the probe's forked passes: training draws what it draws unprobed
    torch.manual_seed(0)
    unprobed = RecordingRegression(dropout=0.5)
    _fit(tmp_path, unprobed, _Augmented(), probed=False)
    assert unprobed.losses == module.losses
    for name, value in unprobed.state_dict().items():
        torch.testing.assert_close(value, module.state_dict()[name], rtol=0, atol=0)


def test_full_batch_metrics_run_on_plain_evaluation_batches(tmp_path):
    """eval_loader batches are single batches, not optimizer-step windows: F is their mean loss."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randn(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    module = RecordingRegression()
    eval_loader = [(x[:32], y[:32]), (x[32:], y[32:])]
    callback = OptprobeCallback(out_dir=tmp_path / "probe", eval_loader=eval_loader)
    trainer = pl.Trainer(max_epochs=1, accumulate_grad_batches=2, accelerator="cpu", callbacks=[callback],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(module, loader)
    end = callback.probe.table().query("event == 'epoch_end'")
    assert len(end) == 1
    with torch.no_grad():
        assert end["full_loss"].iloc[0] == pytest.approx(float(_squared_loss(module, (x, y))), rel=1e-6)

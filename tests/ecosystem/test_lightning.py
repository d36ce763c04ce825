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

"""The probe's extra passes replay the training step's randomness and change nothing in training."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import mse_loss, train
from torch import nn

from optprobe.probe import Probe, ProbeConfig


class DropoutLinear(nn.Module):
    """A linear model behind input dropout: for a fixed mask, the squared loss is convex in w."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x))


def _batches(n_batches: int = 10, d: int = 8):
    g = torch.Generator().manual_seed(5)
    return [(torch.randn(16, d, generator=g), torch.randn(16, generator=g)) for _ in range(n_batches)]


@pytest.mark.parametrize("replay", [True, False])
def test_dropout_mask_is_replayed_so_convex_gaps_stay_nonpositive(replay, tmp_path):
    model = DropoutLinear()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(model, mse_loss, optimizer=opt, out_dir=tmp_path, config=ProbeConfig(replay_rng=replay))
    train(model, mse_loss, _batches(), opt, probe, epochs=3)
    worst = probe.table()["inst_gap_prev"].max()
    if replay:
        assert worst <= 1e-6
    else:  # without the replay, x_{t−1} is evaluated with another mask: the check must be able to fail
        assert worst > 1e-3


def _bn_net() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))


def test_run_with_probe_is_bit_identical_to_run_without(tmp_path):
    torch.manual_seed(0)
    plain = _bn_net()
    probed = copy.deepcopy(plain)
    reference = _bn_net()
    batches = _batches()
    state = torch.get_rng_state()
    train(plain, mse_loss, batches, torch.optim.SGD(plain.parameters(), lr=0.05, momentum=0.9), epochs=2)
    rng_after_plain = torch.get_rng_state()
    torch.set_rng_state(state)
    opt = torch.optim.SGD(probed.parameters(), lr=0.05, momentum=0.9)
    probe = Probe(
        probed,
        mse_loss,
        optimizer=opt,
        reference=reference,
        eval_loader=batches[:3],
        out_dir=tmp_path,
        config=ProbeConfig(full_batch_every=3, per_layer=True),
    )
    train(probed, mse_loss, batches, opt, probe, epochs=2)
    for (name, a), b in zip(plain.state_dict().items(), probed.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{name} differs after training with the probe"
    assert torch.equal(torch.get_rng_state(), rng_after_plain)
    assert probe.table()["inst_gap_ref"].notna().any()


def test_probe_passes_leave_batchnorm_buffers_and_rng_untouched(tmp_path):
    model = _bn_net()
    batch = _batches(1)[0]
    probe = Probe(
        model, mse_loss, eval_loader=[batch], out_dir=tmp_path, config=ProbeConfig(full_batch_every=1)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        probe.begin_step(batch)
        opt.zero_grad()
        mse_loss(model, batch).backward()
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        rng = torch.get_rng_state()
        probe.end_step()  # loss=None: the probe recomputes it, one more pass to check
        assert torch.equal(torch.get_rng_state(), rng)
        for k, v in model.named_buffers():
            assert torch.equal(v, buffers[k]), f"probe changed buffer {k}"
        opt.step()
    assert model.training

"""The training objectives of the built-in tasks: ``loss(model, batch)``, the scalar mean over the batch."""

import torch
import torch.nn.functional as F
from torch import nn


def cross_entropy_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """Mean cross-entropy of (B, K) logits against int64 labels; also (B, T, V) token logits, where
    labels of -100 (unmasked positions in masked LM) are ignored."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100)


def squared_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """1/2 mean over the batch of the squared error summed over outputs (regression)."""
    x, y = batch
    out = model(x)
    return 0.5 * (out - y.reshape(out.shape)).pow(2).reshape(len(out), -1).sum(1).mean()


def onehot_squared_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """1/2 mean squared distance between the (B, K) outputs and one-hot labels (Cohen et al. 2021)."""
    x, y = batch
    out = model(x)
    return 0.5 * (out - F.one_hot(y, out.size(-1)).to(out.dtype)).pow(2).sum(1).mean()


def logistic_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """Mean binary logistic loss of (B, 1) logits against labels in {0, 1}."""
    x, y = batch
    return F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y.to(torch.float32))


def quadratic_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """Mean of the per-sample quadratic objectives 1/2 x^T A x + b_i^T x."""
    (b,) = batch
    return model(b).mean()

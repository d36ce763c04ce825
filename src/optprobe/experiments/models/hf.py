"""Hugging Face `transformers` GPT-2 and BERT built from a config: random init, no weights, no hub access.

`transformers` is imported lazily; the wrappers return plain logits tensors so the same loss functions as
for `GPT` / `BertMLM` apply. `attn_implementation="eager"` is the math attention path needed for
Hessian-vector products; "sdpa" uses the fused kernels.
"""

import importlib
from types import ModuleType

import torch
from torch import nn

from optprobe.errors import OptprobeError


def import_transformers() -> ModuleType:
    """Import `transformers` or raise an OptprobeError with the install command."""
    try:
        return importlib.import_module("transformers")
    except ImportError as exc:
        raise OptprobeError(
            "the Hugging Face models need the `transformers` package: pip install transformers"
        ) from exc


class HFLogits(nn.Module):
    """Wrap a `transformers` model so that forward(idx) returns the (B, T, vocab_size) logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Map (B, T) token ids to (B, T, vocab_size) logits."""
        return self.model(input_ids=idx).logits


def hf_gpt2(
    vocab_size: int = 256,
    block_size: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    dropout: float = 0.0,
    attn_implementation: str = "eager",
) -> HFLogits:
    """Randomly initialised `GPT2LMHeadModel` from a `GPT2Config` of the given size."""
    transformers = import_transformers()
    config = transformers.GPT2Config(
        vocab_size=vocab_size,
        n_positions=block_size,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = transformers.GPT2LMHeadModel._from_config(config, attn_implementation=attn_implementation)
    return HFLogits(model)


def hf_bert(
    vocab_size: int = 257,
    block_size: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    dropout: float = 0.0,
    attn_implementation: str = "eager",
) -> HFLogits:
    """Randomly initialised `BertForMaskedLM` from a `BertConfig` of the given size."""
    transformers = import_transformers()
    config = transformers.BertConfig(
        vocab_size=vocab_size,
        max_position_embeddings=block_size,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        hidden_size=n_embd,
        intermediate_size=4 * n_embd,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=0,
    )
    model = transformers.BertForMaskedLM._from_config(config, attn_implementation=attn_implementation)
    return HFLogits(model)

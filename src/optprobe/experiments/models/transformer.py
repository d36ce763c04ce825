"""Transformer building blocks shared by GPT (causal) and BERT (bidirectional): attention, MLP, block.

`math_attention=True` computes softmax(QK^T / sqrt(d)) V with plain tensor ops. Use it whenever second
derivatives are needed (Hessian-vector products by double backward or forward-over-reverse AD): those are
not implemented for the fused kernels behind `F.scaled_dot_product_attention`.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from optprobe.errors import OptprobeError


class SelfAttention(nn.Module):
    """Multi-head self-attention, causal or bidirectional, via fused SDPA or an explicit math path."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, causal: bool, math_attention: bool) -> None:
        super().__init__()
        if n_embd % n_head:
            raise OptprobeError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        self.n_head, self.dropout, self.causal, self.math_attention = n_head, dropout, causal, math_attention
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, T, C) to (B, T, C)."""
        B, T, C = x.shape
        heads = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.qkv(x).split(C, 2))
        q, k, v = heads
        p = self.dropout if self.training else 0.0
        if self.math_attention:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
            if self.causal:
                keep = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                att = att.masked_fill(~keep, float("-inf"))
            y = F.dropout(att.softmax(dim=-1), p, self.training) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class FeedForward(nn.Module):
    """Position-wise Linear(C, 4C) -> GELU -> Linear(4C, C) -> dropout."""

    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, T, C) to (B, T, C)."""
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, causal: bool, math_attention: bool) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = SelfAttention(n_embd, n_head, dropout, causal, math_attention)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = FeedForward(n_embd, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, T, C) to (B, T, C)."""
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TransformerLM(nn.Module):
    """Token + learned position embeddings, a stack of Blocks, final LayerNorm, tied output projection.

    GPT and BertMLM are this module with causal and bidirectional attention respectively.
    Initialisation follows nanoGPT: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int,
        n_head: int,
        n_embd: int,
        dropout: float,
        causal: bool,
        math_attention: bool,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(n_embd, n_head, dropout, causal, math_attention) for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as in GPT-2 and BERT
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Map (B, T) token ids, T <= block_size, to (B, T, vocab_size) logits."""
        seq_len = idx.size(1)
        if seq_len > self.block_size:
            raise OptprobeError(f"sequence length {seq_len} exceeds block_size {self.block_size}")
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(seq_len, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

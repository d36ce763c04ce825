"""Small GPT (nanoGPT-sized decoder-only transformer) for next-token prediction."""

from optprobe.experiments.models.transformer import TransformerLM


class GPT(TransformerLM):
    """Causal transformer language model: (B, T) token ids -> (B, T, vocab_size) next-token logits.

    Set `math_attention=True` for Hessian-vector products (see `transformer.py`).
    """

    def __init__(
        self,
        vocab_size: int = 256,
        block_size: int = 64,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 64,
        dropout: float = 0.0,
        math_attention: bool = False,
    ) -> None:
        super().__init__(vocab_size, block_size, n_layer, n_head, n_embd, dropout, True, math_attention)

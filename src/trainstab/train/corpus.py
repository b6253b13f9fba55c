"""Token corpora: the bundled one, user files, and deterministic batches.

A corpus is a 1-D array of token ids, read from ``.npy`` (any integer dtype)
or ``.bin`` (raw little-endian uint16, the nanoGPT format). The last 10% of
the tokens are held out for evaluation. Batches are random windows drawn from
a generator seeded by the run's seed, so every learning rate of a sweep, and
every rerun, sees the same data in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainstab.core.config import bundled_corpus_path
from trainstab.core.errors import TrainstabError

HELD_OUT_FRACTION = 0.1  # tail of the corpus kept for evaluation


@dataclass(frozen=True)
class Corpus:
    """Token ids split into a training part and a held-out part."""

    train: torch.Tensor  # (N_train,) int64
    held_out: torch.Tensor  # (N_held_out,) int64
    path: str  # where it was read from
    vocab_size: int  # 1 + the largest token id

    def batches(self, steps: int, batch_size: int, context_length: int, seed: int) -> torch.Tensor:
        """Training windows for every step: (steps, B, T + 1) int64, seeded."""
        return _windows(self.train, steps * batch_size, context_length, seed).view(steps, batch_size, -1)

    def evaluation_batch(self, batch_size: int, context_length: int, seed: int) -> torch.Tensor:
        """A fixed held-out batch (B, T + 1) for the evaluation loss."""
        return _windows(self.held_out, batch_size, context_length, seed + 1)


def _windows(tokens: torch.Tensor, count: int, context_length: int, seed: int) -> torch.Tensor:
    """``count`` random windows of T + 1 tokens, (count, T + 1)."""
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, tokens.numel() - context_length - 1, (count,), generator=generator)
    return tokens[starts.unsqueeze(1) + torch.arange(context_length + 1)]


def load_corpus(path: str | Path | None, context_length: int, vocab_size: int) -> Corpus:
    """Read and check a token file; ``None`` loads the bundled corpus.

    Raises :class:`TrainstabError` when the file is missing, unreadable, not a
    1-D integer array, too short for the context length, or holds token ids
    outside ``[0, vocab_size)``.
    """
    file = Path(path) if path is not None else bundled_corpus_path()
    if not file.is_file():  # a named pipe or a device would hang the read or fill the memory: refused too
        problem = "is not a regular file" if file.exists() else "does not exist"
        raise TrainstabError(f"corpus file {file} {problem}; pass an existing .npy or .bin token file")
    tokens = _read_tokens(file)
    minimum = 20 * (context_length + 1)
    if tokens.size < minimum:
        raise TrainstabError(
            f"corpus {file} has {tokens.size} tokens, fewer than the {minimum} needed for context_length="
            f"{context_length}; supply a longer corpus or lower --set context_length"
        )
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise TrainstabError(
            f"corpus {file} holds token id {bad}, outside [0, vocab_size={vocab_size}); "
            f"set --set vocab_size={high + 1} or fix the file"
        )
    ids = torch.from_numpy(tokens.astype(np.int64))
    split = int(ids.numel() * (1 - HELD_OUT_FRACTION))
    return Corpus(train=ids[:split], held_out=ids[split:], path=str(file), vocab_size=high + 1)


def _read_tokens(file: Path) -> np.ndarray:
    """The token ids of ``file`` as a 1-D integer numpy array."""
    try:
        if file.suffix == ".npy":
            tokens = np.load(file, allow_pickle=False)
        elif file.suffix == ".bin":
            tokens = np.fromfile(file, dtype="<u2")
        else:
            raise TrainstabError(f"corpus {file} has suffix {file.suffix!r}; use a .npy array or a .bin of uint16")
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrainstabError(
            f"corpus {file} could not be read ({reason}); write it with numpy.save or as raw uint16"
        ) from None
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise TrainstabError(
            f"corpus {file} is a {tokens.ndim}-D {tokens.dtype} array; it must be a 1-D array of integer token ids"
        )
    array: np.ndarray = tokens
    return array

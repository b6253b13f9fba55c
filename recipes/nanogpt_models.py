"""nanoGPT's GPT (karpathy/nanoGPT, model.py next to this file or on the path) at the size trainstab asks for.

nanoGPT's ``forward(idx, targets=None)`` returns ``(logits, loss)``, and without targets the logits of the last
position only, (B, 1, V): for generation. trainstab needs every position's logits, (B, T, V): the wrapper passes
targets (any ids) so that nanoGPT computes them all, and drops the loss.

    trainstab check --model nanogpt_models:gpt   # fails attention_logits (no qk-norm)
"""

from model import GPT, GPTConfig  # nanoGPT's model.py
from torch import nn


class EveryPosition(nn.Module):
    """nanoGPT's GPT, returning every position's logits (B, T, V) and nothing else."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, idx):
        """Token ids (B, T) -> logits (B, T, V), through nanoGPT's training path."""
        logits, _ = self.gpt(idx, targets=idx.contiguous())  # with targets: (B, T, V); .view needs contiguous
        return logits


def gpt(size):
    """nanoGPT's GPT at the requested size, no dropout (trainstab compares runs step by step)."""
    config = GPTConfig(
        block_size=size.context_length,
        vocab_size=size.vocab_size,
        n_layer=size.depth,
        n_head=size.heads,
        n_embd=size.width,
        dropout=0.0,
        bias=True,
    )
    return EveryPosition(GPT(config))

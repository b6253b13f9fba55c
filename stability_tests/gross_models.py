"""Hand-written GPTs with a gross mistake in an otherwise stable build: ``gross_models:<name>``.

The mistakes a single line makes: an output head initialised 30x too large
(a wrong ``std`` or a missing ``1/sqrt(d)``). The rest is the qk-normed
pre-LN GPT of ``gpt_models``, so attention is bounded and the mistake is the
only problem. Each factory takes a :class:`trainstab.models.ModelSize`; each
model maps (B, T) token ids to (B, T, V) logits.
"""

import torch
from gpt_models import GPT, GPTOptions


def head_init_x30(size):
    """A pre-LN GPT with qk-norm whose output head starts 30x PyTorch's default scale: log Z starts far from 0."""
    model = GPT(size, GPTOptions(qk_norm=True))
    with torch.no_grad():
        model.head.weight.mul_(30.0)
    return model

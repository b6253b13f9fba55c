"""litgpt's GPT at the size trainstab asks for, with and without its qk-norm (``norm_qk``).

trainstab check --model litgpt_models:gpt           # fails attention_logits
trainstab check --model litgpt_models:gpt_qk_norm   # passes
"""

import litgpt


def gpt(size, norm_qk=False):
    """litgpt's GPT (its defaults: LayerNorm, GPT-NeoX rotary, no qk-norm unless ``norm_qk``)."""
    config = litgpt.Config(
        block_size=size.context_length,
        n_layer=size.depth,
        n_embd=size.width,
        n_head=size.heads,
        vocab_size=size.vocab_size,
        padded_vocab_size=size.vocab_size,
        norm_qk=norm_qk,
    )
    return litgpt.GPT(config)


def gpt_qk_norm(size):
    """The same with litgpt's qk-norm."""
    return gpt(size, norm_qk=True)

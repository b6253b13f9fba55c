"""An x-transformers decoder at the size trainstab asks for, with and without its qk-norm (``attn_qk_norm``).

trainstab check --model x_transformers_models:decoder           # fails attention_logits
trainstab check --model x_transformers_models:decoder_qk_norm   # passes
"""

from x_transformers import Decoder, TransformerWrapper


def decoder(size, qk_norm=False):
    """An x-transformers Decoder in its TransformerWrapper (learned absolute positions)."""
    layers = Decoder(dim=size.width, depth=size.depth, heads=size.heads, attn_qk_norm=qk_norm)
    return TransformerWrapper(num_tokens=size.vocab_size, max_seq_len=size.context_length, attn_layers=layers)


def decoder_qk_norm(size):
    """The same with x-transformers' qk-norm (``attn_qk_norm``)."""
    return decoder(size, qk_norm=True)

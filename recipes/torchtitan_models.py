"""torchtitan 0.3.0's llama3 and qwen3 (qk-norm) at the size trainstab asks for, with their default attention
(flex_attention under torch.compile), unmodified.

    trainstab check --model torchtitan_models:llama3   # fails attention_logits
    trainstab check --model torchtitan_models:qwen3    # passes
"""

import torch
from torch import nn
from torchtitan.models import llama3 as titan_llama3
from torchtitan.models import qwen3 as titan_qwen3
from torchtitan.models.common import ComplexRoPE, CosSinRoPE, Embedding, Linear, RMSNorm


class Titan(nn.Module):
    """torchtitan's decoders take positions and a BlockMask: one document per row, as trainstab's batches are."""

    def __init__(self, config):
        super().__init__()
        self.model = config.build()
        self.model.init_states()

    def forward(self, idx):
        """Token ids (B, T) -> logits (B, T, V)."""
        positions = torch.arange(idx.shape[1], device=idx.device).expand(idx.shape[0], -1)
        return self.model(idx, positions, self.model.get_attention_masks(positions))


def _config(family, layers, size, **shape):
    d, v = size.width, size.vocab_size
    return family.Config(
        dim=d,
        vocab_size=v,
        norm=RMSNorm.Config(normalized_shape=d),
        tok_embeddings=Embedding.Config(num_embeddings=v, embedding_dim=d),
        lm_head=Linear.Config(in_features=d, out_features=v),
        layers=layers(n_layers=size.depth, dim=d, n_heads=size.heads, hidden_dim=4 * d, attn_backend="flex", **shape),
    )


def llama3(size):
    """torchtitan's llama3: GQA-free here (kv heads = heads), complex RoPE, no qk-norm."""
    rope = ComplexRoPE.Config(dim=size.width // size.heads, max_seq_len=size.context_length, theta=500000)
    return Titan(_config(titan_llama3.Llama3Model, titan_llama3._build_llama3_layers, size, rope=rope))


def qwen3(size):
    """torchtitan's qwen3: RMSNorm on q and k, GQA (half the heads for k and v), cos/sin RoPE."""
    head = size.width // size.heads
    rope = CosSinRoPE.Config(dim=head, max_seq_len=size.context_length, theta=1e6)
    layers = titan_qwen3._build_qwen3_layers
    return Titan(_config(titan_qwen3.Qwen3Model, layers, size, rope=rope, head_dim=head, n_kv_heads=size.heads // 2))

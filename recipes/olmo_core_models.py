"""OLMo-core's OLMo 2 transformer at the size trainstab asks for, with and without its qk-norm.

trainstab check --model olmo_core_models:olmo2_no_qk_norm   # fails attention_logits
trainstab check --model olmo_core_models:olmo2              # passes
"""

from olmo_core.nn.transformer import TransformerBlockType, TransformerConfig


def olmo2(size, qk_norm=True):
    """OLMo 2's block (norms after attention and MLP, qk-norm) through ``TransformerConfig.llama_like``."""
    config = TransformerConfig.llama_like(
        d_model=size.width,
        vocab_size=size.vocab_size,
        n_layers=size.depth,
        n_heads=size.heads,
        block_name=TransformerBlockType.reordered_norm,
        qk_norm=qk_norm,
        hidden_size_multiple_of=16,
        layer_norm_eps=1e-6,
    )
    return config.build(init_device="cpu")


def olmo2_no_qk_norm(size):
    """The same without qk-norm."""
    return olmo2(size, qk_norm=False)

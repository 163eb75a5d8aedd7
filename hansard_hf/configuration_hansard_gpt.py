"""HansardGPTConfig: the nanochat GPT (Oct-Dec 2025) as a transformers v5 config, with depth as the one dial.

From `depth` alone: hidden_size = ceil(depth * aspect_ratio / head_dim) * head_dim, num_attention_heads =
hidden_size / head_dim, num_key_value_heads = num_attention_heads, intermediate_size = 4 * hidden_size,
num_hidden_layers = depth. Every derived field can also be given explicitly, so any transformers `NanoChatConfig`
has an equivalent HansardGPTConfig (the field names are the same).
"""

import math

from transformers import PreTrainedConfig


class HansardGPTConfig(PreTrainedConfig):
    r"""
    Args:
        depth (`int`, defaults to 16 when neither it nor `num_hidden_layers` is given):
            Number of transformer blocks; every other size follows from it unless set explicitly.
        aspect_ratio (`int`, *optional*, defaults to 32):
            Model width per layer before rounding up to a multiple of `head_dim` (nanochat uses 64).
        head_dim (`int`, *optional*, defaults to 128):
            Width of one attention head. When `hidden_size` and `num_attention_heads` are both given it is derived.
        vocab_size (`int`, *optional*, defaults to 65536):
            Number of token ids (the Hansard tokenizer's vocabulary, special tokens included).
        hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads (`int`, *optional*):
            Derived from `depth` when left unset; set `num_key_value_heads < num_attention_heads` for GQA.
        max_position_embeddings (`int`, *optional*, defaults to 2048):
            Training sequence length.
        hidden_act (`str`, *optional*, defaults to `"relu2"`):
            MLP activation (nanochat: relu(x)^2).
        rms_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the weightless RMSNorms (the value transformers' NanoChat uses, so exports match bit for bit).
        rope_parameters (`dict`, *optional*):
            `{"rope_type": "default", "rope_theta": 10000.0}` by default; `rope_theta=...` is accepted as a shortcut.
        final_logit_softcapping (`float`, *optional*, defaults to 15.0):
            Logits become `cap * tanh(logits / cap)`, computed in fp32.
        attention_bias (`bool`, *optional*, defaults to `False`):
            Biases on the q/k/v/o projections (nanochat has none).
        loss_chunk_size (`int`, *optional*, defaults to 4096):
            Tokens per chunk of the fused soft-capped cross-entropy used when `labels` are given; 0 computes the
            full logits and calls `self.loss_function` instead.

    Example:

    ```python
    >>> from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
    >>> config = HansardGPTConfig(depth=16)
    >>> config.hidden_size, config.num_attention_heads, config.num_parameters()
    (512, 4, 117440512)
    ```
    """

    model_type = "hansard_gpt"
    keys_to_ignore_at_inference = ["past_key_values"]
    base_model_tp_plan = {
        "layers.*.self_attn.q_proj": "colwise",
        "layers.*.self_attn.k_proj": "colwise",
        "layers.*.self_attn.v_proj": "colwise",
        "layers.*.self_attn.o_proj": "rowwise",
        "layers.*.mlp.fc1": "colwise",
        "layers.*.mlp.fc2": "rowwise",
    }

    depth: int | None = None
    aspect_ratio: int = 32
    head_dim: int = 128
    vocab_size: int = 65536
    hidden_size: int | None = None
    intermediate_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    max_position_embeddings: int = 2048
    hidden_act: str = "relu2"
    attention_dropout: float = 0.0
    rms_norm_eps: float = 1e-6
    rope_parameters: dict | None = None
    final_logit_softcapping: float | None = 15.0
    attention_bias: bool = False
    loss_chunk_size: int = 4096
    use_cache: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        self._derive_sizes()
        super().__post_init__(**kwargs)
        rope_type = self.rope_parameters.get("rope_type", "default")
        if rope_type != "default":
            raise ValueError(f"HansardGPTConfig: rope_parameters.rope_type={rope_type!r} is not supported; use 'default'.")

    def _derive_sizes(self):
        """Fill every size left unset from `depth`, then check the sizes fit together."""
        if self.depth is None:
            self.depth = self.num_hidden_layers if self.num_hidden_layers is not None else 16
        if self.num_hidden_layers is None:
            self.num_hidden_layers = self.depth
        problems = []
        if self.depth < 1:
            problems.append(f"depth={self.depth} must be >= 1")
        if self.num_hidden_layers != self.depth:
            problems.append(f"num_hidden_layers={self.num_hidden_layers} must equal depth={self.depth} (set only one)")
        if self.aspect_ratio < 1 or self.head_dim < 1:
            problems.append(f"aspect_ratio={self.aspect_ratio} and head_dim={self.head_dim} must be >= 1")
        if problems:
            raise ValueError("Invalid HansardGPTConfig: " + "; ".join(problems) + ".")

        if self.hidden_size is None:
            self.hidden_size = math.ceil(self.depth * self.aspect_ratio / self.head_dim) * self.head_dim
        if self.num_attention_heads is None:
            if self.hidden_size % self.head_dim:
                raise ValueError(
                    f"Invalid HansardGPTConfig: hidden_size={self.hidden_size} is not a multiple of "
                    f"head_dim={self.head_dim}; set num_attention_heads explicitly or change one of them."
                )
            self.num_attention_heads = self.hidden_size // self.head_dim
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size

        if self.num_attention_heads < 1 or self.hidden_size % self.num_attention_heads:
            problems.append(
                f"hidden_size={self.hidden_size} must be divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.num_key_value_heads < 1 or self.num_attention_heads % self.num_key_value_heads:
            problems.append(
                f"num_attention_heads={self.num_attention_heads} must be divisible by "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if problems:
            raise ValueError("Invalid HansardGPTConfig: " + "; ".join(problems) + ".")
        self.head_dim = self.hidden_size // self.num_attention_heads

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameter count of HansardGPTForCausalLM (the same as `model.num_parameters(...)`)."""
        d, heads, kv, hd = self.hidden_size, self.num_attention_heads, self.num_key_value_heads, self.head_dim
        attention = d * heads * hd + 2 * d * kv * hd + heads * hd * d
        if self.attention_bias:
            attention += heads * hd + 2 * kv * hd + d
        mlp = 2 * d * self.intermediate_size
        lm_head = self.vocab_size * d
        embedding = 0 if exclude_embeddings else self.vocab_size * d
        return embedding + self.num_hidden_layers * (attention + mlp) + lm_head

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """nanochat's training FLOPs per token: 6 * (params - embedding) + 12 * layers * heads * head_dim * seq_len."""
        seq_len = self.max_position_embeddings if seq_len is None else seq_len
        attention = 12 * self.num_hidden_layers * self.num_attention_heads * self.head_dim * seq_len
        return 6 * self.num_parameters(exclude_embeddings=True) + attention


HansardGPTConfig.register_for_auto_class()

__all__ = ["HansardGPTConfig"]

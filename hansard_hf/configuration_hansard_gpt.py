"""HansardGPTConfig: the nanochat GPT (Oct-Dec 2025) as a transformers v5 config, with depth as the one dial.

From `depth` alone: hidden_size = ceil(depth * aspect_ratio / head_dim) * head_dim, num_attention_heads =
hidden_size / head_dim, num_key_value_heads = num_attention_heads, intermediate_size = 4 * hidden_size,
num_hidden_layers = depth. Every derived field can also be given explicitly, so any transformers `NanoChatConfig`
has an equivalent HansardGPTConfig (the field names are the same).

nanochat's 2026 architecture (92d63d4) is a set of options, each off by default: `layer_types`/`sliding_window`,
`value_embeddings`, `residual_lambdas`, `smear`, `backout`, `qk_gain`, `initialization`, with RoPE base 100,000
through `rope_parameters`. `NANOCHAT_2026` holds nanochat's choice of all of them.
"""

import math

from transformers import PreTrainedConfig

INITIALIZATIONS = ("nanochat-2025", "nanochat-2026")  # as hansard_hf.choices.Initialization (this file ships alone)
WINDOW_LETTERS = {"S": "sliding_attention", "L": "full_attention"}
VALUE_GATE_CHANNELS = 12  # input channels of a value-embedding gate (nanochat 92d63d4)
SMEAR_CHANNELS = 24  # input channels of the smear gate

# nanochat's 2026 architecture (92d63d4): HansardGPTConfig(depth=..., **NANOCHAT_2026).
NANOCHAT_2026 = dict(
    layer_types="SSSL",
    value_embeddings=True,
    residual_lambdas=True,
    smear=True,
    backout=True,
    qk_gain=1.2,
    rope_theta=100000.0,
    initialization="nanochat-2026",
)


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
        layer_types (`list[str]` or `str`, *optional*):
            `"full_attention"` or `"sliding_attention"` per layer. A pattern such as nanochat's `"SSSL"` (S sliding,
            L full) is tiled over the layers with the last layer always full. None: every layer full (or, with
            `sliding_window` set, every layer sliding, as in transformers).
        sliding_window (`int`, *optional*):
            Keys a sliding layer attends to, itself included (nanochat's window + 1). Defaults, when a layer slides,
            to nanochat's short window `ceil(max_position_embeddings / 4 / 128) * 128` plus one.
        value_embeddings (`bool`, *optional*, defaults to `False`):
            ResFormer value embeddings on alternating layers (the last included): `v += 3 * sigmoid(gate(x[:12])) *
            embed(input_ids)`, one gate per KV head.
        residual_lambdas (`bool`, *optional*, defaults to `False`):
            Before block i, `x = resid_lambdas[i] * x + x0_lambdas[i] * x0` with x0 the normed (smeared) embedding.
        smear (`bool`, *optional*, defaults to `False`):
            Mix the previous token's normed embedding into each position through a gate on its first 24 channels.
        backout (`bool`, *optional*, defaults to `False`):
            Subtract `backout_lambda` times the residual after block `num_hidden_layers // 2` before the final norm.
        qk_gain (`float`, *optional*, defaults to 1.0):
            Queries and keys are multiplied by it after QK-norm (nanochat 2026: 1.2).
        initialization (`str`, *optional*, defaults to `"nanochat-2025"`):
            Weight initialisation of a new model: nanochat's Oct-2025 scheme or its `"nanochat-2026"` one.

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
    layer_types: list[str] | str | None = None
    sliding_window: int | None = None
    value_embeddings: bool = False
    residual_lambdas: bool = False
    smear: bool = False
    backout: bool = False
    qk_gain: float = 1.0
    initialization: str = "nanochat-2025"

    def __post_init__(self, **kwargs):
        self._derive_sizes()
        self._derive_layer_types()
        super().__post_init__(**kwargs)
        rope_type = self.rope_parameters.get("rope_type", "default")
        if rope_type != "default":
            raise ValueError(f"HansardGPTConfig: rope_parameters.rope_type={rope_type!r} is not supported; use 'default'.")
        if self.initialization not in INITIALIZATIONS:
            raise ValueError(f"HansardGPTConfig: initialization={self.initialization!r}; use one of {INITIALIZATIONS}.")

    def _derive_layer_types(self):
        """Expand a window pattern ("SSSL") to per-layer types and give sliding layers nanochat's default window."""
        layers = self.num_hidden_layers
        if isinstance(self.layer_types, str):
            pattern = self.layer_types.upper()
            if not pattern or set(pattern) - set("SL"):
                raise ValueError(f"HansardGPTConfig: layer_types={self.layer_types!r} as a pattern uses only S and L.")
            self.layer_types = [WINDOW_LETTERS[pattern[i % len(pattern)]] for i in range(layers)]
            self.layer_types[-1] = "full_attention"
        elif self.layer_types is None and self.sliding_window is not None:
            self.layer_types = ["sliding_attention"] * layers
        if self.layer_types is None:
            return
        self.layer_types = list(self.layer_types)
        unknown = set(self.layer_types) - set(WINDOW_LETTERS.values())
        if len(self.layer_types) != layers or unknown:
            raise ValueError(
                f"HansardGPTConfig: layer_types needs {layers} entries of 'full_attention' or 'sliding_attention' "
                f"(got {len(self.layer_types)}{', unknown ' + str(sorted(unknown)) if unknown else ''})."
            )
        if "sliding_attention" in self.layer_types and self.sliding_window is None:
            self.sliding_window = -(-self.max_position_embeddings // 4 // 128) * 128 + 1
        if self.sliding_window is not None and self.sliding_window < 1:
            raise ValueError(f"HansardGPTConfig: sliding_window={self.sliding_window} must be >= 1.")

    def attention_types(self) -> list[str]:
        """Each layer's attention: `layer_types`, or every layer full when it is unset."""
        return self.layer_types or ["full_attention"] * self.num_hidden_layers

    def value_embedding_layers(self) -> list[int]:
        """The layers with value embeddings: every other one, ending with the last (none when they are off)."""
        layers = self.num_hidden_layers
        return [i for i in range(layers) if i % 2 == (layers - 1) % 2] if self.value_embeddings else []

    def features_2026(self) -> list[str]:
        """The nanochat 2026 architecture options this config turns on (what native NanoChat cannot represent)."""
        features = {
            "sliding windows (layer_types)": "sliding_attention" in self.attention_types(),
            "value_embeddings": self.value_embeddings,
            "residual_lambdas": self.residual_lambdas,
            "smear": self.smear,
            "backout": self.backout,
            f"qk_gain={self.qk_gain}": self.qk_gain != 1.0,
        }
        return [name for name, on in features.items() if on]

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

    def parameter_counts(self) -> dict[str, int]:
        """Parameters by group, as nanochat's `num_scaling_params`: wte, value_embeds, lm_head, transformer_matrices
        (every block weight, value gates included), scalars (lambdas, smear gate)."""
        d, heads, kv, hd = self.hidden_size, self.num_attention_heads, self.num_key_value_heads, self.head_dim
        attention = d * heads * hd + 2 * d * kv * hd + heads * hd * d
        if self.attention_bias:
            attention += heads * hd + 2 * kv * hd + d
        mlp = 2 * d * self.intermediate_size
        value_layers = len(self.value_embedding_layers())
        return {
            "wte": self.vocab_size * d,
            "value_embeds": value_layers * self.vocab_size * kv * hd,
            "lm_head": self.vocab_size * d,
            "transformer_matrices": self.num_hidden_layers * (attention + mlp) + value_layers * VALUE_GATE_CHANNELS * kv,
            "scalars": 2 * self.num_hidden_layers * self.residual_lambdas + (SMEAR_CHANNELS + 1) * self.smear
            + self.backout,
        }

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameter count of HansardGPTForCausalLM (the same as `model.num_parameters(...)`); the embeddings
        excluded are the token and value embeddings."""
        counts = self.parameter_counts()
        embeddings = counts["wte"] + counts["value_embeds"]
        return sum(counts.values()) - (embeddings if exclude_embeddings else 0)

    def scaling_parameters(self) -> int:
        """nanochat 2026's parameters for its tokens-per-parameter rule: the block matrices plus lm_head."""
        counts = self.parameter_counts()
        return counts["transformer_matrices"] + counts["lm_head"]

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """nanochat's training FLOPs per token: 6 * matmul weights (all but the embeddings and the scalar lambdas) +
        12 * heads * head_dim * keys attended, summed over layers (a sliding layer attends to at most its window)."""
        seq_len = self.max_position_embeddings if seq_len is None else seq_len
        counts = self.parameter_counts()
        matmul = counts["transformer_matrices"] + counts["lm_head"] + SMEAR_CHANNELS * self.smear
        windows = [
            min(self.sliding_window - 1, seq_len) if kind == "sliding_attention" else seq_len
            for kind in self.attention_types()
        ]
        return 6 * matmul + 12 * self.num_attention_heads * self.head_dim * sum(windows)


HansardGPTConfig.register_for_auto_class()

__all__ = ["HansardGPTConfig", "NANOCHAT_2026"]

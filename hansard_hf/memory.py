"""Peak training memory per GPU, and the activation checkpointing that makes a micro-batch fit.

The activation terms are the bytes the model keeps for backward under bf16 autocast, per token and hidden unit,
as measured on the model itself (tests/test_memory.py counts them with saved-tensor hooks):

- a layer kept whole: 32 (fp32 residual into each norm 4 + 4, bf16 normed inputs 2 + 2, q and k after RoPE 2 + 2,
  SDPA's q, k, v and output 8 (the output is also o_proj's input), fc1's output 8 (relu^2 is recomputed in
  backward)), plus 12 bytes per head (fp32 1/rms of q and k, attention log-sum-exp) and 8 (1/rms of the two norms)
  per token;
- a checkpointed layer: 4 (its fp32 input), and in backward one layer is recomputed whole at a time;
- outside the layers: 12 (embedding output, final norm input, the loss's fp32 gradient of the hidden states), plus
  16 per token (token ids, two norms' 1/rms);
- nanochat's 2026 parts, measured the same way: residual lambdas 4 per layer (the fp32 residual each lambda
  scales); value embeddings, on their layers, 2 per KV channel and 4 per KV head (the looked-up values, the gate);
  the smear 4, plus 56 bytes per token (its gate); the backout 4 (the kept mid-network residual).

During backward, gradients of one layer's activations are in flight: counted as 16 per token and hidden unit (fc1's
output gradient 8, the fp32 residual's 4, a normed input's and an attention tensor's 2 + 2; an assumption, not
measured on the CPU: tests/test_gpu.py compares the whole estimate with a GPU's peak).

State per parameter: fp32 weight 4 + fp32 gradient 4 + bf16 autocast copy 2, plus Muon momentum 4 (block matrices)
or AdamW moments 8 (embedding, lm_head); DDP gradient buckets are views of the gradients (no copy). Under FSDP2 the
state is divided among the GPUs (`shards`); that part of the estimate is arithmetic, not yet measured on a GPU.
"""

import math

from .configuration_hansard_gpt import HansardGPTConfig

KEPT_LAYER_BYTES = 32
CHECKPOINTED_LAYER_BYTES = 4
OUTSIDE_LAYERS_BYTES = 12
PER_HEAD_BYTES = 12
PER_TOKEN_LAYER_BYTES = 8
PER_TOKEN_OUTSIDE_BYTES = 16
BACKWARD_IN_FLIGHT_BYTES = 16
MEMORY_FRACTION = 0.85  # of the GPU's memory, for the estimate: the rest is CUDA context, workspaces, fragmentation


def checkpointed_layers(num_layers: int, every_n_layers: int) -> int:
    """How many layers `activation_checkpointing_enable(every_n_layers=n)` checkpoints (0: none)."""
    return 0 if every_n_layers <= 0 else math.ceil(num_layers / every_n_layers)


def kept_layer_bytes(config: HansardGPTConfig) -> int:
    """Bytes per token that a layer kept whole holds for backward (the value embeddings averaged over the layers)."""
    h, kv_heads = config.hidden_size, config.num_key_value_heads
    value_layers = len(config.value_embedding_layers()) / config.num_hidden_layers
    return (KEPT_LAYER_BYTES * h + PER_HEAD_BYTES * config.num_attention_heads + PER_TOKEN_LAYER_BYTES
            + 4 * h * config.residual_lambdas + round(value_layers * (2 * kv_heads * config.head_dim + 4 * kv_heads)))


def outside_layers_bytes(config: HansardGPTConfig) -> int:
    """Bytes per token kept for backward outside the layers."""
    h = config.hidden_size
    return OUTSIDE_LAYERS_BYTES * h + PER_TOKEN_OUTSIDE_BYTES + (4 * h + 56) * config.smear + 4 * h * config.backout


def activation_bytes(config: HansardGPTConfig, tokens: int, every_n_layers: int = 0) -> int:
    """Bytes kept for backward by a forward over `tokens` tokens (bf16 autocast), checkpointing every n-th layer."""
    h, layers = config.hidden_size, config.num_hidden_layers
    checkpointed = checkpointed_layers(layers, every_n_layers)
    kept_layer = kept_layer_bytes(config)
    recompute = kept_layer if checkpointed else 0  # one checkpointed layer is whole again during its backward
    return tokens * ((layers - checkpointed) * kept_layer + checkpointed * CHECKPOINTED_LAYER_BYTES * h
                     + recompute + outside_layers_bytes(config))


def optimizer_bytes(config: HansardGPTConfig) -> int:
    """fp32 optimizer state: Muon's momentum (4 per block-matrix parameter), AdamW's two moments (8 per other one)."""
    matrices = config.parameter_counts()["transformer_matrices"]
    return 4 * matrices + 8 * (config.num_parameters() - matrices)


def checkpoint_bytes(config: HansardGPTConfig) -> int:
    """One resumable checkpoint on disk: the fp32 weights and the optimizer state (the tokenizer, RNG, schedule and
    trainer state add well under 1% at the recipes' sizes)."""
    return 4 * config.num_parameters() + optimizer_bytes(config)


def state_bytes(config: HansardGPTConfig, shards: int = 1) -> int:
    """Weights, gradients, bf16 copies and optimizer state held per GPU. Under DDP (`shards=1`) all of it; under FSDP2
    over `shards` GPUs, 1/shards of the fp32 weights, gradients and optimizer state, plus the units gathered whole
    (two in flight, the one computing and the one prefetched: bf16 weights 2 + unsharded fp32 gradients 4 per
    parameter), the largest unit being a decoder layer or the root's embedding + lm_head."""
    counts, params = config.parameter_counts(), config.num_parameters()
    matrices = counts["transformer_matrices"]
    optimizer = optimizer_bytes(config)
    if shards == 1:
        return 10 * params + optimizer
    value_table = counts["value_embeds"] // max(len(config.value_embedding_layers()), 1)
    unit = max(matrices // config.num_hidden_layers + value_table, params - matrices - counts["value_embeds"])
    return -(-(8 * params + optimizer) // shards) + 2 * 6 * unit


def training_bytes(config: HansardGPTConfig, micro_batch: int, seq: int, every_n_layers: int = 0,
                   shards: int = 1) -> int:
    """Estimated peak bytes per GPU of a training step at `micro_batch` rows of `seq` tokens (state sharded over
    `shards` GPUs under FSDP2, see `state_bytes`)."""
    tokens = micro_batch * seq
    loss_buffers = 2 * 4 * min(config.loss_chunk_size, tokens) * config.vocab_size
    in_flight = BACKWARD_IN_FLIGHT_BYTES * config.hidden_size * tokens
    return state_bytes(config, shards) + activation_bytes(config, tokens, every_n_layers) + loss_buffers + in_flight


def checkpointing_to_fit(config: HansardGPTConfig, micro_batch: int, seq: int, memory_bytes: float,
                         shards: int = 1) -> int | None:
    """The `every_n_layers` that fits `MEMORY_FRACTION` of `memory_bytes`: 0 (no checkpointing) when everything
    fits, else the largest n that does (1 = every layer); None when even full checkpointing does not fit."""
    budget = MEMORY_FRACTION * memory_bytes
    if training_bytes(config, micro_batch, seq, shards=shards) <= budget:
        return 0
    layers = config.num_hidden_layers
    return next((n for n in range(layers, 0, -1) if training_bytes(config, micro_batch, seq, n, shards) <= budget),
                None)

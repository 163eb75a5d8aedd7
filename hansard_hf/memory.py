"""Peak training memory per GPU, the activation checkpointing that makes a micro-batch fit, and fitting a run into
the device's memory where it is set up, before the Trainer is built (`fit_to_memory`: the checkpointing chosen from
the estimate, the micro-batch found by probing).

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

import logging
import math

from .configuration_hansard_gpt import HansardGPTConfig
from .distributed import reduce_across_processes
from .layout import Layout, current_layout

logger = logging.getLogger(__name__)

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


def state_shards(args) -> int:
    """How many GPUs the training state is divided among: the processes under FSDP2, else 1."""
    return args.world_size if current_layout().sharded else 1


def fit_to_memory(model, args, train_dataset=None) -> None:
    """What `hansard-hf train` does between resolving the batch (`args.resolve`) and building the HansardTrainer:
    with `auto_activation_checkpointing` (a GPU, bf16, DDP or FSDP2) the checkpointing that fits the GPU's memory
    (under FSDP2 with the state divided among the GPUs), then with
    `auto_micro_batch` the largest micro-batch that runs one step without running out of memory."""
    import torch

    if args.fitting.auto_activation_checkpointing and not args.activation_checkpointing and args.bf16 and \
            current_layout() != Layout.DEEPSPEED and args.device.type == "cuda":  # the estimate: bf16, DDP or FSDP2
        checkpoint_to_fit(model, args, torch.cuda.get_device_properties(args.device).total_memory, state_shards(args))
    if args.fitting.auto_micro_batch and train_dataset is not None:
        fit_micro_batch(model, args, train_dataset)
    args.fitted_to_memory = True  # HansardTrainer warns when the automatic choices were asked for and never made


def checkpoint_to_fit(model, args, memory_bytes: float, shards: int = 1) -> int:
    """Turn on activation checkpointing of every n-th layer when the estimated peak memory of the micro-batch exceeds
    what `memory_bytes` allows (the largest n that fits, see hansard_hf.memory; the state over `shards` GPUs under
    FSDP2); returns n, 0 when none is needed."""
    micro, seq = args.per_device_train_batch_size, args.budget.max_seq_len
    every = checkpointing_to_fit(model.config, micro, seq, memory_bytes, shards)
    if every is None:
        logger.warning("The micro-batch (%d x %d) may not fit in %.0f GB even with every layer checkpointed: "
                       "checkpointing every layer (auto_micro_batch=true lowers the micro-batch on out-of-memory).",
                       micro, seq, memory_bytes / 1e9)
        every = 1
    if every:
        args.activation_checkpointing = True
        args.activation_checkpointing_kwargs = {**(args.activation_checkpointing_kwargs or {}), "every_n_layers": every}
        model.activation_checkpointing_enable(every_n_layers=every)
        layers = model.config.num_hidden_layers
        logger.warning("Activation checkpointing of one layer in %d (%d of %d) so that the micro-batch fits: "
                       "estimated peak %.1f GB of %.0f GB.", every, checkpointed_layers(layers, every), layers,
                       training_bytes(model.config, micro, seq, every, shards) / 1e9, memory_bytes / 1e9)
    return every


def fit_micro_batch(model, args, dataset) -> None:
    """Run one forward+backward at the micro-batch on the training device; on out-of-memory take the next smaller
    micro-batch that divides the rows of a step (the accumulation grows so the tokens per step stay the same), log
    it, and try again. Under torch.distributed every rank then uses the smallest micro-batch any rank could fit."""
    import torch

    device = args.device
    model.to(device)
    rows_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    micro = args.per_device_train_batch_size
    while True:
        rows = [dataset[i] for i in range(min(micro, len(dataset)))]
        batch = {key: torch.stack([row[key] for row in rows]).to(device) for key in rows[0]}
        try:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(args.bf16)):
                model(**batch).loss.backward()
            break
        except torch.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            del batch
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if micro == 1:
                raise
            micro = max(d for d in range(1, micro) if rows_per_step % d == 0)
            logger.warning("Out of memory: micro-batch lowered to %d rows, %d accumulation steps.",
                           micro, rows_per_step // micro)
    model.zero_grad(set_to_none=True)
    micro = int(reduce_across_processes(torch.tensor([micro], device=device), op="min").item())  # every rank agrees
    args.set_micro_batch(micro, rows_per_step // micro)

"""Fitting a run into the device's memory, done where the run is set up (before the Trainer is built):
activation checkpointing chosen from the estimate (hansard_hf.memory), and the micro-batch found by probing."""

import logging

import torch

from .distributed import reduce_across_processes
from .memory import checkpointed_layers, checkpointing_to_fit, training_bytes
from .parallelism import parallelism

logger = logging.getLogger(__name__)


def fit_to_memory(model, args, train_dataset=None) -> None:
    """What `hansard-hf train` does between resolving the batch (`args.resolve`) and building the HansardTrainer:
    with `auto_activation_checkpointing` (a GPU, bf16, DDP or FSDP2) the checkpointing that fits the GPU's memory
    (under FSDP2 with the state divided among the GPUs), then with
    `auto_micro_batch` the largest micro-batch that runs one step without running out of memory."""
    layout = parallelism()
    shards = args.world_size if layout.startswith("FSDP") else 1  # FSDP2 divides the state among the GPUs
    if args.auto_activation_checkpointing and not args.activation_checkpointing and args.bf16 and \
            layout != "DeepSpeed" and args.device.type == "cuda":  # the estimate is for bf16 autocast, DDP or FSDP2
        checkpoint_to_fit(model, args, torch.cuda.get_device_properties(args.device).total_memory, shards)
    if args.auto_micro_batch and train_dataset is not None:
        fit_micro_batch(model, args, train_dataset)
    args.fitted_to_memory = True  # HansardTrainer warns when the automatic choices were asked for and never made


def checkpoint_to_fit(model, args, memory_bytes: float, shards: int = 1) -> int:
    """Turn on activation checkpointing of every n-th layer when the estimated peak memory of the micro-batch exceeds
    what `memory_bytes` allows (the largest n that fits, see hansard_hf.memory; the state over `shards` GPUs under
    FSDP2); returns n, 0 when none is needed."""
    micro, seq = args.per_device_train_batch_size, args.max_seq_len
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

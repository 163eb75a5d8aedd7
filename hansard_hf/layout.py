"""How a run is spread over processes (its `Layout`): the layout every run states at start, the check that a
launch got the parallelism it asked for, and FSDP2 applied by hand (`shard_model`, what accelerate's FSDP2 plugin
does on GPUs, for torchrun scripts and for CPU tests, where accelerate turns an FSDP config into DDP)."""

import os
from enum import Enum

LAUNCH_FIX = ("on a machine without a GPU, run DDP over CPU processes: accelerate launch --multi_gpu --num_processes N "
              "... --use_cpu=true (gloo); FSDP through accelerate needs GPUs")


def fsdp_asked() -> bool:
    """Whether the launch asked for FSDP (accelerate launch --config_file accelerate_fsdp2.yaml sets this)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


class Layout(Enum):
    """How the model and its training state are spread over the processes."""

    SINGLE = "single process"
    DDP = "DDP"  # a whole copy per process
    FSDP1 = "FSDP1"
    FSDP2 = "FSDP2"  # parameters, gradients and optimizer state sharded over the processes
    DEEPSPEED = "DeepSpeed"

    @property
    def sharded(self) -> bool:
        """Whether the training state is divided among the processes (FSDP)."""
        return self in (Layout.FSDP1, Layout.FSDP2)

    def __str__(self) -> str:
        return self.value


def current_layout() -> Layout:
    """The layout in force in this process. Before the Trainer's Accelerator exists, accelerate's process state
    says MULTI_GPU (or another accelerator's group) for an FSDP launch; the Accelerator then applies the FSDP config
    to exactly such groups, never to CPU processes."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    kind = PartialState().distributed_type
    accelerator_group = kind.name.startswith("MULTI_") and kind != DistributedType.MULTI_CPU
    if kind == DistributedType.FSDP or (fsdp_asked() and accelerator_group):
        return Layout.FSDP2 if os.environ.get("FSDP_VERSION", "1") == "2" else Layout.FSDP1
    if kind == DistributedType.DEEPSPEED:
        return Layout.DEEPSPEED
    return Layout.SINGLE if kind == DistributedType.NO else Layout.DDP


def describe_layout(args) -> str:
    """The line a run prints at start: parallelism, world size, micro-batch and accumulation per process."""
    world = args.world_size
    tokens = args.per_device_train_batch_size * args.gradient_accumulation_steps * world * args.budget.max_seq_len
    return (f"layout     {current_layout()}, world size {world}: {args.per_device_train_batch_size} rows x "
            f"{args.gradient_accumulation_steps} accumulation per process, {tokens:,} tokens per step")


def check_launch() -> None:
    """The launch got what it asked for: the FSDP its accelerate config names (not DDP in its place), and as many
    processes as the launcher started (not N processes each training alone)."""
    from accelerate import PartialState

    state = PartialState()
    if fsdp_asked() and not current_layout().sharded:
        raise ValueError(f"the accelerate config asks for FSDP, but accelerate runs {current_layout()} here (with use_cpu "
                         f"or without GPUs it does not apply FSDP): {LAUNCH_FIX}.")
    asked = int(os.environ.get("WORLD_SIZE", "1"))
    if asked != state.num_processes:
        raise ValueError(f"the launcher started {asked} processes (WORLD_SIZE={asked}) but accelerate runs this one "
                         f"alone (world size {state.num_processes}), so each would train by itself: {LAUNCH_FIX}.")


def shard_model(model, mesh=None, reshard_after_forward: bool = True):
    """FSDP2 (`fully_shard`) over a HansardGPT model as accelerate's TRANSFORMER_BASED_WRAP applies it: each decoder
    layer is one unit, the root (embedding, lm_head) another. Parameters become DTensors sharded on dim 0."""
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return model

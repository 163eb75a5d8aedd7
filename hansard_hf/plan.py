"""The plan of a run (`hansard-hf plan`): parameters, tokens, steps, the micro-batch the Trainer will use, FLOPs, the
time at an MFU, the memory per GPU under each layout, and the disk its checkpoints keep; in words and as a table."""

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from .budget import PEAK_FLOPS, step_plan
from .settings import Budget
from .layout import Layout
from .memory import checkpoint_bytes, checkpointed_layers, checkpointing_to_fit, training_bytes
from .recipe import Recipe


@dataclass(frozen=True)
class LayoutMemory:
    """Under one layout: the activation checkpointing that fits (every n-th layer; 0: none needed; None: not even
    every layer fits), the layers it checkpoints, and the estimated peak memory per GPU."""

    every_n_layers: int | None
    checkpointed_layers: int
    memory_gb: float


@dataclass(frozen=True)
class Plan:
    """A recipe's run on `gpus` GPUs of a kind, as `plan` works it out."""

    depth: int
    width: int
    heads: int
    params: int
    counted: int  # the parameters the token budget counts (parameter_count)
    parameter_count: str
    features: list  # nanochat 2026's parts the model has
    tokens: int
    steps: int
    device_batch_size: int  # the micro-batch used
    requested_device_batch_size: int  # the micro-batch asked for
    accumulation: int
    flops_per_token: float
    total_flops: float
    memory: dict  # Layout -> LayoutMemory
    layout: Layout | None  # the first layout that fits (None: neither)
    gpu_memory_gb: float
    gpus: int
    gpu: str
    mfu: float
    hours: float
    save_every: int
    save_every_minutes: float
    save_interval_minutes: float  # between checkpoints, by the step count or the clock
    save_total_limit: int | None
    checkpoints_saved: int
    checkpoints_kept: int
    checkpoint_bytes: int
    model_bytes: int
    kept_bytes: int


def plan(recipe: Recipe, gpus: int = 8, gpu: str = "H100", mfu: float = 0.45, gpu_memory_gb: float = 85) -> Plan:
    """Parameters, tokens, steps, the micro-batch used (`step_plan`, as the Trainer does), FLOPs, the wall time at
    `mfu`, and per layout (DDP: a whole model per GPU; FSDP2: the state divided among the `gpus`) the activation
    checkpointing that fits `gpu_memory_gb` with its peak memory estimate; `layout` is the first that fits."""
    peak = PEAK_FLOPS.get(gpu)
    if peak is None:
        raise ValueError(f"--gpu {gpu!r}: unknown; use one of {list(PEAK_FLOPS)}.")
    config, s = recipe.model_config(), recipe.settings
    seq, total, params = s["max_seq_len"], s["total_batch_size"], config.num_parameters()
    try:
        steps = step_plan(dataclasses.replace(Budget.of(s), strict_batch_size=False), config, gpus, s["max_steps"])
    except ValueError as error:
        raise ValueError(f"{recipe.path}, planned for {gpus} GPUs (--gpus): {error}") from None
    tokens = steps.steps * total
    flops = config.flops_per_token(seq) * tokens
    micro = steps.device_batch_size
    memory = {}
    for layout, shards in ((Layout.DDP, 1), (Layout.FSDP2, gpus)):
        every = checkpointing_to_fit(config, micro, seq, gpu_memory_gb * 1e9, shards)
        used = 1 if every is None else every  # None: not even full checkpointing fits
        memory[layout] = LayoutMemory(every, checkpointed_layers(config.num_hidden_layers, used),
                                      training_bytes(config, micro, seq, used, shards) / 1e9)
    fitting = [layout for layout, m in memory.items() if m.every_n_layers is not None]
    hours = flops / (gpus * peak * mfu) / 3600
    every, limit, clock = s["save_every"], s["save_total_limit"], s["save_every_minutes"]
    interval = hours * 60 * every / steps.steps if every > 0 else 0.0  # minutes between step checkpoints
    if every > 0 and 0 < clock < interval:  # the clock saves sooner: every save_every_minutes
        interval = clock
    kept = -(-steps.steps // every) if every > 0 else 0  # every save_every steps, and at the last step
    saved = max(kept, math.ceil(hours * 60 / interval)) if every > 0 else 0  # with the clock's interim ones
    kept = min(kept, limit) if limit and limit > 0 else kept  # an interim one goes once a newer one is complete
    return Plan(depth=config.depth, width=config.hidden_size, heads=config.num_attention_heads, params=params,
                counted=steps.counted_parameters, parameter_count=s["parameter_count"], features=config.features_2026(),
                tokens=tokens, steps=steps.steps, device_batch_size=micro,
                requested_device_batch_size=s["device_batch_size"], accumulation=steps.accumulation,
                flops_per_token=config.flops_per_token(seq), total_flops=flops, memory=memory,
                layout=fitting[0] if fitting else None, gpu_memory_gb=gpu_memory_gb, gpus=gpus, gpu=gpu, mfu=mfu,
                hours=hours, save_every=every, save_every_minutes=clock, save_interval_minutes=interval,
                save_total_limit=limit, checkpoints_saved=saved, checkpoints_kept=kept, checkpoint_bytes=checkpoint_bytes(config),
                model_bytes=4 * params, kept_bytes=kept * checkpoint_bytes(config) + 4 * params)


def memory_text(p: Plan, layout: Layout) -> str:
    """A layout's activation checkpointing and peak memory per GPU, in words."""
    m = p.memory[layout]
    if m.every_n_layers == 0:
        return f"no checkpointing, {m.memory_gb:.0f} GB"
    text = f"{m.checkpointed_layers} of {p.depth} layers checkpointed, {m.memory_gb:.0f} GB"
    return text if m.every_n_layers is not None else text + ": does not fit"


def plan_table(recipes: list[Recipe], gpus: int = 8, gpu: str = "H100", mfu: float = 0.45,
               gpu_memory_gb: float = 85) -> str:
    """A markdown table of `plan` for several recipes (the README's recipe table)."""
    lines = ["| recipe | width | heads | params | tokens | steps | micro-batch (asked) x accum | FLOPs/token | "
             f"total FLOPs | DDP: memory/GPU (of {gpu_memory_gb:.0f} GB) | FSDP2 over {gpus} GPUs | needs | "
             f"hours on {gpus}x{gpu} at {mfu:.0%} MFU |", "|" + "---|" * 13]
    for recipe in recipes:
        p = plan(recipe, gpus, gpu, mfu, gpu_memory_gb)
        lines.append(
            f"| {Path(recipe.path).stem} | {p.width} | {p.heads} | {p.params:,} | {p.tokens / 1e9:.2f}B | "
            f"{p.steps:,} | {p.device_batch_size} ({p.requested_device_batch_size}) x {p.accumulation} | "
            f"{p.flops_per_token:.3g} | {p.total_flops:.3g} | {memory_text(p, Layout.DDP)} | "
            f"{memory_text(p, Layout.FSDP2)} | {p.layout or 'more GPUs'} | {p.hours:.1f} |"
        )
    return "\n".join(lines)


def describe_plan(p: Plan) -> str:
    """The text `hansard-hf plan` prints for one recipe."""
    adjusted = ("" if p.device_batch_size == p.requested_device_batch_size else
                f" (asked {p.requested_device_batch_size}: it does not divide the batch, so lowered)")
    config = {Layout.DDP: "accelerate_config.yaml", Layout.FSDP2: "accelerate_fsdp2.yaml"}
    needs = (f"{p.layout} (accelerate launch --config_file {config[p.layout]} ...)" if p.layout else
             f"neither fits {p.gpus} GPUs of {p.gpu_memory_gb:.0f} GB: more GPUs or a smaller device_batch_size")
    counted = ("" if p.parameter_count == "all" else
               f" ({p.counted:,} counted for the token budget: block matrices + lm_head)")
    lines = [f"model        d{p.depth}: width {p.width}, {p.heads} heads, {p.params:,} parameters{counted}"]
    if p.features:
        lines.append(f"2026 parts   {', '.join(p.features)}")
    return "\n".join(lines + [
        f"tokens       {p.tokens:,} in {p.steps:,} steps",
        f"batch        {p.device_batch_size} rows per GPU{adjusted} x {p.accumulation} accumulation x {p.gpus} GPUs",
        f"FLOPs        {p.flops_per_token:.3g} per token, {p.total_flops:.3g} in total",
        f"memory       peak per GPU of {p.gpu_memory_gb:.0f} GB (estimate, bf16): DDP {memory_text(p, Layout.DDP)}; "
        f"FSDP2 {memory_text(p, Layout.FSDP2)}",
        f"layout       {needs}",
        f"time         ~{p.hours:.1f} h on {p.gpus}x {p.gpu} at {p.mfu:.0%} MFU "
        f"({p.hours * p.gpus:,.1f} GPU-hours)",
        f"disk         {checkpoints_text(p)}",
        *([f"saving       {stall_text(p)}"] if p.checkpoints_saved else []),
    ])


def stall_text(p: Plan) -> str:
    """How often a run saves and how long the saves stop training (the Trainer saves synchronously), at 1 GB/s."""
    from .progress import duration

    seconds = p.checkpoint_bytes / SAVE_BYTES_PER_SECOND
    total = seconds * p.checkpoints_saved
    held = f"~{total / p.hours:.0f} s per hour" if p.hours >= 1 else f"~{total:.0f} s in all"
    return (f"a checkpoint every ~{duration(60 * p.save_interval_minutes)} (save_every={p.save_every:,} steps, "
            f"save_every_minutes={p.save_every_minutes:g}); each stops training ~{seconds:.0f} s at 1 GB/s: {held}")


SAVE_BYTES_PER_SECOND = 1e9  # a GPU node's local NVMe or parallel filesystem, writing a checkpoint (an assumption)


def checkpoints_text(p: Plan) -> str:
    """What a run keeps on disk, in words: its checkpoints (with the rotation that applies) and the final model."""
    gb = lambda n: f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.0f} MB"  # noqa: E731
    if not p.checkpoints_saved:
        return f"{gb(p.kept_bytes)}: the final model only (save_every=0: no checkpoints)"
    regular = -(-p.steps // p.save_every)
    rotation = (f"save_total_limit={p.save_total_limit} keeps the newest {p.checkpoints_kept}"
                if p.checkpoints_kept < regular else
                f"save_total_limit={p.save_total_limit or 'none'}: all {p.checkpoints_kept} kept")
    interim = p.checkpoints_saved - regular
    clock = (f"; {interim} more by the clock, each replaced by the next" if interim > 0 else "")
    return (f"{gb(p.kept_bytes)} at the end: a checkpoint of {gb(p.checkpoint_bytes)} every "
            f"{p.save_every:,} steps and at the last, {regular} in all ({rotation}{clock}), plus the final model "
            f"({gb(p.model_bytes)})")

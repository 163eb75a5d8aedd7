"""The budget arithmetic shared by the plan and the Trainer: tokens per step -> micro-batch x accumulation, the
Chinchilla-style step count (`step_plan`, the one function both use), and the GPUs' peak FLOP/s for MFU and time
estimates."""

import math
from dataclasses import dataclass

from .choices import ParameterCount, check_choice
from .settings import Budget


# Dense bf16 peak FLOP/s by GPU name (nanochat's table); the first name found in the device name wins.
PEAK_FLOPS = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,
    "H200": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
}


def peak_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of a GPU by its name (e.g. "NVIDIA H100 80GB HBM3"); None when unknown."""
    return next((flops for key, flops in PEAK_FLOPS.items() if key in device_name), None)


def batch_plan(total_batch_size: int, device_batch_size: int, max_seq_len: int, world_size: int, strict: bool):
    """(device batch, gradient accumulation) giving exactly `total_batch_size` tokens per optimizer step.

    The device batch is the largest one <= the requested size that divides the rows each rank needs per step.
    """
    rows, remainder = divmod(total_batch_size, max_seq_len * world_size)
    if remainder or rows == 0:
        raise ValueError(
            f"total_batch_size={total_batch_size} is not a multiple of max_seq_len x world_size = "
            f"{max_seq_len} x {world_size}: choose a total_batch_size that is."
        )
    if device_batch_size < 1:
        raise ValueError(f"device_batch_size={device_batch_size} must be >= 1.")
    used = next(b for b in range(min(device_batch_size, rows), 0, -1) if rows % b == 0)
    if used != device_batch_size and strict:
        raise ValueError(
            f"device_batch_size={device_batch_size} x max_seq_len={max_seq_len} x world_size={world_size} does not "
            f"divide total_batch_size={total_batch_size}; pick a device_batch_size that divides {rows} "
            "(or drop strict_batch_size)."
        )
    return used, rows // used


B_REF = 2**19  # nanochat 2026's reference batch (tokens), tuned at depth 12
WEIGHT_DECAY_REF = 0.28  # nanochat 2026's Muon weight decay at the reference


def counted_parameters(config, parameter_count: str = "all") -> int:
    """The parameters the tokens-per-parameter rule counts: all (nanochat 10231df) or the block matrices plus lm_head
    (nanochat 2026, `config.scaling_parameters()`)."""
    check_choice("parameter_count", parameter_count, ParameterCount)
    return config.num_parameters() if parameter_count == "all" else config.scaling_parameters()


def nanochat_2026_scaling(scaling_parameters: int, reference_scaling_parameters: int, ratio: float = 12) -> dict:
    """nanochat 2026's transfer from depth 12 (base_train 92d63d4): the batch grows as tokens^0.383 (Power Lines),
    rounded to a power of two; every LR but the smear's is scaled by sqrt(B / B_REF); the Muon weight decay is
    0.28 * sqrt(B / B_REF) * D_REF / D (T_epoch rule). `reference_scaling_parameters`: the same model at depth 12."""
    tokens, reference_tokens = ratio * scaling_parameters, ratio * reference_scaling_parameters
    batch = 2 ** round(math.log2(B_REF * (tokens / reference_tokens) ** 0.383))
    return dict(total_batch_size=batch, lr_scale=math.sqrt(batch / B_REF),
                weight_decay=WEIGHT_DECAY_REF * math.sqrt(batch / B_REF) * reference_tokens / tokens)


def chinchilla_steps(target_param_data_ratio: float, num_parameters: int, total_batch_size: int) -> int:
    """Optimizer steps that show the model `target_param_data_ratio` tokens per parameter (nanochat's rule)."""
    return int(target_param_data_ratio * num_parameters // total_batch_size)


@dataclass(frozen=True)
class StepPlan:
    """The rows per device per micro-step, the micro-steps per optimizer step, the optimizer steps, and the
    parameters the step count was derived from (`counted_parameters`)."""

    device_batch_size: int
    accumulation: int
    steps: int
    counted_parameters: int


def step_plan(budget: Budget, config, world_size: int, max_steps: int = 0) -> StepPlan:
    """The micro-batch, accumulation and steps of a run of the model `config`: `batch_plan` for this world size, and
    `max_steps` when it is > 0, else `chinchilla_steps` of the parameters `parameter_count` counts. `hansard-hf
    plan` and the Trainer both ask this function."""
    total_batch_size, device_batch_size, max_seq_len = budget.total_batch_size, budget.device_batch_size, \
        budget.max_seq_len
    target_param_data_ratio, strict_batch_size, parameter_count = budget.target_param_data_ratio, \
        budget.strict_batch_size, budget.parameter_count
    if not callable(getattr(config, "scaling_parameters", None)):
        raise TypeError(f"step_plan needs the model's HansardGPTConfig (it counts the parameters by "
                        f"parameter_count={parameter_count!r}), not {type(config).__name__}: pass model.config.")
    counted = counted_parameters(config, parameter_count)
    micro, accumulation = batch_plan(total_batch_size, device_batch_size, max_seq_len, world_size, strict_batch_size)
    steps = max_steps if max_steps and max_steps > 0 else \
        chinchilla_steps(target_param_data_ratio, counted, total_batch_size)
    if steps < 1:
        raise ValueError(
            f"target_param_data_ratio={target_param_data_ratio} x {counted} parameters is less than one step of "
            f"total_batch_size={total_batch_size} tokens: set max_steps or a smaller batch."
        )
    return StepPlan(micro, accumulation, steps, counted)

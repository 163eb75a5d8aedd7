"""HansardTrainingArguments: transformers' TrainingArguments plus nanochat's settings.

Batch size and accumulation are derived from token counts (`resolve`, by `budget.step_plan`); every numeric setting
with a range is checked once, here, when the arguments are built.
"""

import dataclasses
import logging
import math
import textwrap
import typing
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
from transformers import TrainingArguments

from .budget import EVAL_TOKENS, TOKENS_PER_PARAMETER, Budget, step_plan
from .choices import AdamWGroups, NsDtype, Orthogonalizer, ParameterCount, WarmdownShape, WeightDecayShape, check_choice

logger = logging.getLogger(__name__)


# The numeric settings with a range (NaN is in none): learning rates and weight decay finite, fractions at most 1.
SETTING_RANGES = {"embedding_lr": math.inf, "unembedding_lr": math.inf, "matrix_lr": math.inf, "scalar_lr": math.inf,
                  "matrix_weight_decay": math.inf, "target_param_data_ratio": math.inf, "max_grad_norm": math.inf,
                  "warmup_ratio": 1, "warmdown_ratio": 1, "final_lr_frac": 1, "momentum_end": 1, "momentum_final": 1,
                  "normuon_beta2": 1, "save_every_minutes": math.inf, "loss_spike_factor": math.inf}


# The Trainer's settings that follow one of ours (the rows per device, the evaluation and save intervals): set ours.
DERIVED = {"per_device_train_batch_size": "device_batch_size", "per_device_eval_batch_size": "device_batch_size",
           "eval_steps": "eval_every", "save_steps": "save_every"}
TRAINER_DEFAULTS = {f.name: f.default for f in fields(TrainingArguments)}


@dataclass
class HansardTrainingArguments(TrainingArguments):
    """TrainingArguments with nanochat's knobs; batch size and accumulation are derived from token counts."""

    embedding_lr: float = field(default=0.2, metadata={"help": "AdamW LR of the token embedding, times (hidden/768)^-0.5."})
    unembedding_lr: float = field(default=0.004, metadata={"help": "AdamW LR of lm_head, times (hidden/768)^-0.5."})
    matrix_lr: float = field(default=0.02, metadata={"help": "Muon LR of the 2-D block weights (x max(1, rows/cols)^0.5)."})
    scalar_lr: float = field(default=0.5, metadata={"help": "AdamW LR of the x0 lambdas (residual lambdas: 1/100 of it), for models with nanochat 2026's residual_lambdas."})
    adamw_groups: AdamWGroups = field(default="nanochat-2025", metadata={"help": "Betas and weight decay of the embedding and lm_head: 'nanochat-2025' (0.8/0.95, none) or 'nanochat-2026' (0.8/0.995 decay 0.001; 0.8/0.96 decay 0.01)."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Fraction of the steps spent warming the LR up linearly."})
    warmdown_ratio: float = field(default=0.2, metadata={"help": "Fraction of the steps at the end spent decaying the LR."})
    final_lr_frac: float = field(default=0.0, metadata={"help": "LR multiplier reached at the last step."})
    warmdown_shape: WarmdownShape = field(default="linear", metadata={"help": "Shape of the warmdown: 'linear' (nanochat) or 'cosine'."})
    momentum_warmup_steps: int = field(default=300, metadata={"help": "Muon momentum rises 0.85 -> momentum_end over these steps."})
    momentum_end: float = field(default=0.95, metadata={"help": "Muon momentum after its warmup (nanochat 2026: 0.97)."})
    momentum_final: float | None = field(default=None, metadata={"help": "If set, Muon momentum falls linearly to this across the LR warmdown (nanochat 2026: 0.90)."})
    muon_orthogonalizer: Orthogonalizer = field(default="newton_schulz", metadata={"help": "'newton_schulz' (nanochat 10231df) or 'polar_express' (nanochat 2026, with MuonEq row equilibration)."})
    muon_plus: bool = field(default=False, metadata={"help": "Muon+ (nanochat 2026): snap each update's norm to sqrt(min(rows, cols))."})
    normuon_beta2: float | None = field(default=None, metadata={"help": "NorMuon variance reduction with this beta2 (nanochat 2026: 0.9); none: off."})
    matrix_weight_decay: float = field(default=0.0, metadata={"help": "Weight decay of the Muon matrices (nanochat 10231df: 0; 2026: 0.28, scaled by batch and tokens)."})
    cautious_weight_decay: bool = field(default=False, metadata={"help": "Decay the matrices at their LR only where update and weight agree in sign (nanochat 2026)."})
    weight_decay_shape: WeightDecayShape = field(default="constant", metadata={"help": "The matrices' weight decay over training: 'constant' or 'cosine' to 0 (nanochat 2026)."})
    muon_compile: bool | None = field(default=None, metadata={"help": "torch.compile the orthogonalizer: true, false, or none (on CUDA only)."})
    muon_ns_dtype: NsDtype = field(default="auto", metadata={"help": "Newton-Schulz dtype: 'auto' (bf16 on CUDA, fp32 on CPU), 'bfloat16' or 'float32'."})
    target_param_data_ratio: float = field(default=TOKENS_PER_PARAMETER, metadata={"help": "Training tokens per parameter; sets max_steps unless max_steps > 0."})
    parameter_count: ParameterCount = field(default="all", metadata={"help": "The parameters target_param_data_ratio counts: 'all' (nanochat 10231df) or 'scaling' (block matrices + lm_head, nanochat 2026)."})
    total_batch_size: int = field(default=524288, metadata={"help": "Tokens per optimizer step, over all ranks and accumulation steps."})
    device_batch_size: int = field(default=32, metadata={"help": "Rows per device per micro-step (lowered to divide total_batch_size if needed)."})
    max_seq_len: int = field(default=2048, metadata={"help": "Tokens per row."})
    auto_activation_checkpointing: bool = field(default=True, metadata={"help": "On a GPU with bf16 under DDP, unless activation_checkpointing is set: checkpoint every n-th layer, with the largest n whose estimated peak memory (hansard_hf.memory) fits the GPU; none when everything fits. Logged. Applied by hansard_hf.memory.fit_to_memory (hansard-hf train runs it before the Trainer)."})
    auto_micro_batch: bool = field(default=False, metadata={"help": "Before training, try one step at the micro-batch; on out-of-memory halve it and double the accumulation (logged), until it fits. Applied by hansard_hf.memory.fit_to_memory (hansard-hf train runs it before the Trainer)."})
    strict_batch_size: bool = field(default=False, metadata={"help": "Fail instead of lowering device_batch_size when it does not divide."})
    eval_tokens: int = field(default=EVAL_TOKENS, metadata={"help": "Validation tokens per evaluation (nanochat's eval_tokens); 0 = the whole split."})
    eval_every: int = field(default=250, metadata={"help": "Report validation bits per byte (eval_bpb) every this many steps; 0 disables."})
    core_metric_every: int = field(default=1000, metadata={"help": "Run the benchmarks (CORE with core_bundle, the Hansard benchmark) every this many steps and at the end; 0 disables."})
    core_bundle: str | None = field(default=None, metadata={"help": "Folder of the CORE eval bundle (core.yaml, eval_data/, eval_meta_data.csv); none: no CORE during training."})
    core_max_per_task: int = field(default=500, metadata={"help": "Examples per task in CORE / Hansard benchmark runs during training."})
    save_every: int = field(default=2000, metadata={"help": "Save a resumable checkpoint every this many steps; 0: no checkpoints (recipes still save the final model)."})
    save_every_minutes: float = field(default=30.0, metadata={"help": (
        "Also save a checkpoint whenever this many minutes passed since the last one (0: off): a crash loses at most "
        "about this much work whatever the recipe's step time (d48's 2,000 steps take hours).")})
    loss_spike_factor: float = field(default=2.0, metadata={"help": (
        "Stop the run (diverged) when a logged loss exceeds this many times the median of the last 20 logged "
        "losses (0: off; a loss that is not finite always stops it).")})
    sample_every: int = field(default=2000, metadata={"help": "Log greedy samples of fixed prompts every this many steps and at the end (needs the tokenizer); 0 disables."})
    # Trainer defaults that cost a host sync or deviate from nanochat
    max_grad_norm: float = field(default=0.0, metadata={"help": (
        "Gradient clipping norm; 0 = none. Departs from nanochat 10231df, which clips at 1.0: nanochat itself removed "
        "clipping in 061f83c (2026-01-08: it clipped per GPU before the gradient sync, cost ~2% MFU and did not help), "
        "and we follow that. 1.0 reproduces 10231df.")})
    logging_nan_inf_filter: bool = field(default=False, metadata={"help": "Filter nan/inf losses (a host sync per step)."})
    average_tokens_across_devices: bool = field(default=False, metadata={"help": "Gather token counts across ranks every step."})
    ddp_find_unused_parameters: bool | None = field(default=False, metadata={"help": "DDP unused-parameter search."})
    train_sampling_strategy: Literal["random", "sequential", "group_by_length", "batch_rebalance"] = field(default="sequential", metadata={"help": "Packed rows are read in order."})
    dataloader_drop_last: bool = field(default=True, metadata={"help": "Every micro-batch has device_batch_size rows."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep every batch key (shift_labels too)."})
    logging_steps: float = field(default=10, metadata={"help": "Log loss, lrm, tokens/s and MFU every this many steps."})

    def __post_init__(self):
        for name, at_most in SETTING_RANGES.items():  # NaN or Infinity would train a non-finite model without a word
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)
                                          and 0 <= value <= at_most):
                limit = "0 or more" if at_most == math.inf else f"from 0 to {at_most:g}"
                raise ValueError(f"{name}={value}: must be a finite number, {limit}.")
        for name, kind in HansardTrainingArguments.__annotations__.items():  # a setting typed as a choice holds one
            if typing.get_origin(kind) is typing.Literal:
                check_choice(name, getattr(self, name), kind)
        for twin, ours in DERIVED.items():  # one name per setting: the Trainer's twin follows ours
            value, untouched = getattr(self, twin), TRAINER_DEFAULTS[twin]
            if value != untouched and value != getattr(self, ours):
                raise ValueError(f"{twin}={value}: hansard-hf sets it from {ours} ({ours}={getattr(self, ours)}); "
                                 f"set {ours}={value} instead.")
        if self.muon_compile not in (True, False, None):
            raise ValueError(f"muon_compile={self.muon_compile!r}: use true, false or null (on CUDA only).")
        on_gpu = torch.cuda.is_available() and not self.use_cpu
        if self.accelerator_config is None and on_gpu:
            self.accelerator_config = {"non_blocking": True}  # pinned rows reach the GPU without a host sync
        self.dataloader_pin_memory = self.dataloader_pin_memory and on_gpu  # pinning needs a GPU to copy to
        self.set_micro_batch(self.device_batch_size, self.gradient_accumulation_steps)
        if self.eval_every > 0:
            self.eval_strategy, self.eval_steps = "steps", self.eval_every
        if self.save_every > 0:
            self.save_strategy, self.save_steps = "steps", self.save_every
        elif self.save_every == 0:
            self.save_strategy = "no"
        super().__post_init__()

    def set_micro_batch(self, rows: int, accumulation: int) -> None:
        """The rows per device per forward (training and evaluation) and the micro-steps per optimizer step."""
        self.device_batch_size = self.per_device_train_batch_size = self.per_device_eval_batch_size = rows
        self.gradient_accumulation_steps = accumulation

    def resolve(self, config) -> None:
        """Set the micro-batch, the accumulation and (unless given) max_steps for this world size and the model
        `config` (`step_plan`, as `hansard-hf plan` does). Calling it again changes nothing."""
        asked = self.device_batch_size
        plan = step_plan(Budget.of(self), config, self.world_size)
        if plan.device_batch_size != asked:
            logger.warning(
                "device_batch_size=%d x max_seq_len=%d x world_size=%d does not divide total_batch_size=%d: using "
                "device_batch_size=%d with %d accumulation steps.", asked, self.max_seq_len, self.world_size,
                self.total_batch_size, plan.device_batch_size, plan.accumulation,
            )
        self.set_micro_batch(plan.device_batch_size, plan.accumulation)
        self.max_steps = plan.steps


def hansard_options() -> list:
    """The fields HansardTrainingArguments adds to TrainingArguments and those it declares again (other defaults),
    in the order the class declares them: the options `hansard-hf train --help` and docs/options.md list."""
    fields_by_name = {f.name: f for f in fields(HansardTrainingArguments)}
    declared = list(dict.fromkeys(name for klass in reversed(HansardTrainingArguments.__mro__)
                                  if klass.__module__.startswith("hansard_hf") for name in klass.__annotations__))
    return [fields_by_name[name] for name in declared if name in fields_by_name]


def option_type(setting) -> str:
    """A field's type as written in the class (`float`, `bool | None`, `Literal['linear', 'cosine']`)."""
    kind = setting.type
    return kind if isinstance(kind, str) else kind.__name__ if isinstance(kind, type) else \
        str(kind).replace("typing.", "")


def option_default(setting) -> str:
    return repr(setting.default) if setting.default is not dataclasses.MISSING else "required"


def options_text(width: int = 100) -> str:
    """Every option of `hansard_options` with its type, default and help: the end of `hansard-hf train --help`."""
    lines = ["recipe keys and --key=value overrides (with every other TrainingArguments field):"]
    for setting in hansard_options():
        lines.append(f"  --{setting.name}  ({option_type(setting)}, default {option_default(setting)})")
        lines.append(textwrap.fill(setting.metadata.get("help", ""), width, initial_indent=" " * 6,
                                   subsequent_indent=" " * 6))
    return "\n".join(lines) + "\n"

"""HansardTrainingArguments: transformers' TrainingArguments plus one frozen group of nanochat's settings per concern
(`hansard_hf.settings`: `args.budget`, `args.muon`, `args.adamw`, `args.schedule`, `args.evaluation`,
`args.checkpointing`, `args.fitting`).

Batch size and accumulation are derived from token counts (`resolve`, by `budget.step_plan`). Recipes and overrides
name settings flat (`matrix_lr`); `HansardTrainingArguments.from_settings` sorts them into their groups.
"""

import dataclasses
import logging
import math
import textwrap
from dataclasses import dataclass, field, fields
from typing import Literal

import torch
from transformers import TrainingArguments

from .budget import step_plan
from .settings import (CONCERNS, AdamW, Budget, Checkpointing, Evaluation, Fitting, Muon, Schedule, flat,
                       group_field, into_groups)

logger = logging.getLogger(__name__)

# The Trainer's settings that follow one of ours (the rows per device, the evaluation and save intervals): set ours.
DERIVED = {"per_device_train_batch_size": ("budget", "device_batch_size"),
           "per_device_eval_batch_size": ("budget", "device_batch_size"),
           "eval_steps": ("evaluation", "eval_every"), "save_steps": ("checkpointing", "save_every")}
TRAINER_DEFAULTS = {f.name: f.default for f in fields(TrainingArguments)}


@dataclass
class HansardTrainingArguments(TrainingArguments):
    """TrainingArguments with nanochat's settings in one frozen group per concern; batch size and accumulation are
    derived from token counts."""

    budget: Budget = group_field(Budget)
    muon: Muon = group_field(Muon)
    adamw: AdamW = group_field(AdamW)
    schedule: Schedule = group_field(Schedule)
    evaluation: Evaluation = group_field(Evaluation)
    checkpointing: Checkpointing = group_field(Checkpointing)
    fitting: Fitting = group_field(Fitting)
    # transformers' fields whose defaults cost a host sync or depart from nanochat
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

    @classmethod
    def from_settings(cls, **settings) -> "HansardTrainingArguments":
        """The arguments of flat settings, as recipes name them: `from_settings(output_dir="run", matrix_lr=0.01,
        bf16=True)`. Each of our settings goes to its group; the rest are TrainingArguments fields."""
        return cls(**into_groups(settings, CONCERNS))

    def __post_init__(self):
        for concern, kind in CONCERNS.items():
            value = getattr(self, concern)
            if not isinstance(value, kind):
                raise TypeError(f"{concern}: a hansard_hf.settings.{kind.__name__}, not {type(value).__name__}.")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            raise ValueError(f"max_grad_norm={self.max_grad_norm}: must be a finite number, 0 or more.")
        for twin, (concern, ours) in DERIVED.items():  # one name per setting: the Trainer's twin follows ours
            value, untouched, wanted = getattr(self, twin), TRAINER_DEFAULTS[twin], getattr(getattr(self, concern), ours)
            if value != untouched and value != wanted:
                raise ValueError(f"{twin}={value}: hansard-hf sets it from {ours} ({ours}={wanted}); "
                                 f"set {ours}={value} instead.")
        on_gpu = torch.cuda.is_available() and not self.use_cpu
        if self.accelerator_config is None and on_gpu:
            self.accelerator_config = {"non_blocking": True}  # pinned rows reach the GPU without a host sync
        self.dataloader_pin_memory = self.dataloader_pin_memory and on_gpu  # pinning needs a GPU to copy to
        self.set_micro_batch(self.budget.device_batch_size, self.gradient_accumulation_steps)
        if self.evaluation.eval_every > 0:
            self.eval_strategy, self.eval_steps = "steps", self.evaluation.eval_every
        if self.checkpointing.save_every > 0:
            self.save_strategy, self.save_steps = "steps", self.checkpointing.save_every
        else:
            self.save_strategy = "no"
        super().__post_init__()

    def set_micro_batch(self, rows: int, accumulation: int) -> None:
        """The rows per device per forward (training and evaluation) and the micro-steps per optimizer step."""
        self.budget = dataclasses.replace(self.budget, device_batch_size=rows)
        self.per_device_train_batch_size = self.per_device_eval_batch_size = rows
        self.gradient_accumulation_steps = accumulation

    def resolve(self, config) -> None:
        """Set the micro-batch, the accumulation and (unless given) max_steps for this world size and the model
        `config` (`step_plan`, as `hansard-hf plan` does). Calling it again changes nothing."""
        budget = self.budget
        plan = step_plan(budget, config, self.world_size, self.max_steps)
        if plan.device_batch_size != budget.device_batch_size:
            logger.warning(
                "device_batch_size=%d x max_seq_len=%d x world_size=%d does not divide total_batch_size=%d: using "
                "device_batch_size=%d with %d accumulation steps.", budget.device_batch_size, budget.max_seq_len,
                self.world_size, budget.total_batch_size, plan.device_batch_size, plan.accumulation,
            )
        self.set_micro_batch(plan.device_batch_size, plan.accumulation)
        self.max_steps = plan.steps

    def to_dict(self) -> dict:
        """TrainingArguments.to_dict with our settings flat, by their own names (wandb's config, JSON)."""
        return flat(super().to_dict(), CONCERNS)


def hansard_options() -> dict[str, list]:
    """The options hansard-hf adds, by group ("budget": Budget's fields, ...), then the TrainingArguments fields it
    declares again with other defaults (under "transformers"): what `hansard-hf train --help` and docs/options.md
    list."""
    options = {concern: list(fields(kind)) for concern, kind in CONCERNS.items()}
    ours = {f.name: f for f in fields(HansardTrainingArguments)}
    options["transformers"] = [ours[name] for name in HansardTrainingArguments.__annotations__
                               if name in ours and name not in CONCERNS]
    return options


def group_title(concern: str) -> str:
    """A group's heading: its field and class with the class's first line, or the transformers fields' own."""
    if concern not in CONCERNS:
        return "transformers' TrainingArguments fields with other defaults (no host sync per step; nanochat's ways)"
    group = HansardTrainingArguments.__dataclass_fields__[concern]
    return f"args.{concern} ({CONCERNS[concern].__name__}): {group.metadata['help']}"


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
    for concern, settings in hansard_options().items():
        lines.append(textwrap.fill(group_title(concern), width, initial_indent="  ", subsequent_indent="    "))
        for setting in settings:
            lines.append(f"    --{setting.name}  ({option_type(setting)}, default {option_default(setting)})")
            lines.append(textwrap.fill(setting.metadata.get("help", ""), width, initial_indent=" " * 8,
                                       subsequent_indent=" " * 8))
    return "\n".join(lines) + "\n"

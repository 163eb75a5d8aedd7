"""The training settings hansard-hf adds to transformers' TrainingArguments, one frozen dataclass per concern.

`HansardTrainingArguments` holds one of each (`args.budget`, `args.muon`, ...). Recipes, `--key=value` overrides and
wandb's config use the fields' own names, flat (`matrix_lr`, not `muon.matrix_lr`): every name belongs to one concern.
Each field's help is its documentation (`hansard-hf train --help`, docs/options.md), and every check is made once,
in `Settings.__post_init__`, from the field's type and range.
"""

import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Literal, Mapping

from .choices import AdamWGroups, NsDtype, Orthogonalizer, ParameterCount, WarmdownShape, WeightDecayShape, check_choice

TOKENS_PER_PARAMETER = 20.0  # nanochat's Chinchilla ratio: training tokens per parameter
EVAL_TOKENS = 20 * 524288  # validation tokens per evaluation (nanochat's eval_tokens)


def setting(default, help: str, at_most: float | None = None):
    """A field with its help; `at_most`: a number that must be finite and from 0 to `at_most` (math.inf: no top)."""
    return field(default=default, metadata={"help": help, "at_most": at_most})


class Settings:
    """A frozen group of settings: each value checked once, when the group is made."""

    def __post_init__(self):
        for setting_field in fields(self):
            name, value, kind = setting_field.name, getattr(self, setting_field.name), setting_field.type
            at_most = setting_field.metadata["at_most"]
            if at_most is not None and value is not None and not (
                    isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and 0 <= value <= at_most):  # NaN or Infinity would train a non-finite model without a word
                limit = "0 or more" if at_most == math.inf else f"from 0 to {at_most:g}"
                raise ValueError(f"{name}={value!r}: must be a finite number, {limit}.")
            if typing.get_origin(kind) is Literal:
                check_choice(name, value, kind)
            elif kind is bool and not isinstance(value, bool):
                raise ValueError(f"{name}={value!r}: use true or false.")
            elif isinstance(kind, types.UnionType) and bool in kind.__args__ and value is not None \
                    and not isinstance(value, bool):
                raise ValueError(f"{name}={value!r}: use true, false or null.")

    @classmethod
    def of(cls, values: Mapping):
        """The group's settings found in `values` (flat keys: a recipe's settings), the rest at their defaults."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


@dataclass(frozen=True)
class Budget(Settings):
    """How many tokens a step takes, split into rows per device and micro-steps, and how many steps a run takes."""

    total_batch_size: int = setting(524288, "Tokens per optimizer step, over all ranks and accumulation steps.")
    device_batch_size: int = setting(32, "Rows per device per micro-step (lowered to divide total_batch_size if "
                                         "needed); the Trainer's per_device_train/eval_batch_size follow it.")
    max_seq_len: int = setting(2048, "Tokens per row.")
    target_param_data_ratio: float = setting(
        TOKENS_PER_PARAMETER, "Training tokens per parameter; sets max_steps unless max_steps > 0.", math.inf)
    parameter_count: ParameterCount = setting(
        "all", "The parameters target_param_data_ratio counts: 'all' (nanochat 10231df) or 'scaling' (block matrices "
               "+ lm_head, nanochat 2026).")
    strict_batch_size: bool = setting(False, "Fail instead of lowering device_batch_size when it does not divide.")


@dataclass(frozen=True)
class Fitting(Settings):
    """How a run is made to fit the GPU's memory.

    Applied by hansard_hf.memory.fit_to_memory, which `hansard-hf train` runs before the Trainer."""

    auto_activation_checkpointing: bool = setting(
        True, "On a GPU with bf16 under DDP, unless activation_checkpointing is set: checkpoint every n-th layer, "
              "with the largest n whose estimated peak memory (hansard_hf.memory) fits the GPU; none when everything "
              "fits. Logged.")
    auto_micro_batch: bool = setting(
        False, "Before training, try one step at the micro-batch; on out-of-memory halve it and double the "
               "accumulation (logged), until it fits.")


@dataclass(frozen=True)
class Muon(Settings):
    """The Muon optimizer of the 2-D block weights."""

    matrix_lr: float = setting(0.02, "Muon LR of the 2-D block weights (x max(1, rows/cols)^0.5).", math.inf)
    matrix_weight_decay: float = setting(
        0.0, "Weight decay of the Muon matrices (nanochat 10231df: 0; 2026: 0.28, scaled by batch and tokens).",
        math.inf)
    muon_orthogonalizer: Orthogonalizer = setting(
        "newton_schulz", "'newton_schulz' (nanochat 10231df) or 'polar_express' (nanochat 2026, with MuonEq row "
                         "equilibration).")
    muon_plus: bool = setting(False, "Muon+ (nanochat 2026): snap each update's norm to sqrt(min(rows, cols)).")
    normuon_beta2: float | None = setting(
        None, "NorMuon variance reduction with this beta2 (nanochat 2026: 0.9); none: off.", 1)
    cautious_weight_decay: bool = setting(
        False, "Decay the matrices at their LR only where update and weight agree in sign (nanochat 2026).")
    muon_compile: bool | None = setting(None, "torch.compile the orthogonalizer: true, false, or none (on CUDA only).")
    muon_ns_dtype: NsDtype = setting(
        "auto", "Newton-Schulz dtype: 'auto' (bf16 on CUDA, fp32 on CPU), 'bfloat16' or 'float32'.")


@dataclass(frozen=True)
class AdamW(Settings):
    """The AdamW groups: the token embedding, lm_head and (nanochat 2026's models) the scalars."""

    embedding_lr: float = setting(0.2, "AdamW LR of the token embedding, times (hidden/768)^-0.5.", math.inf)
    unembedding_lr: float = setting(0.004, "AdamW LR of lm_head, times (hidden/768)^-0.5.", math.inf)
    scalar_lr: float = setting(
        0.5, "AdamW LR of the x0 lambdas (residual lambdas: 1/100 of it), for models with nanochat 2026's "
             "residual_lambdas.", math.inf)
    adamw_groups: AdamWGroups = setting(
        "nanochat-2025", "Betas and weight decay of the embedding and lm_head: 'nanochat-2025' (0.8/0.95, none) or "
                         "'nanochat-2026' (0.8/0.995 decay 0.001; 0.8/0.96 decay 0.01).")


@dataclass(frozen=True)
class Schedule(Settings):
    """nanochat's schedules over a run: the LR, Muon's momentum and the matrices' weight decay."""

    warmup_ratio: float = setting(
        0.0, "Fraction of the steps spent warming the LR up linearly (transformers' warmup_steps, when >= 1, "
             "wins).", 1)
    warmdown_ratio: float = setting(0.2, "Fraction of the steps at the end spent decaying the LR.", 1)
    final_lr_frac: float = setting(0.0, "LR multiplier reached at the last step.", 1)
    warmdown_shape: WarmdownShape = setting("linear", "Shape of the warmdown: 'linear' (nanochat) or 'cosine'.")
    momentum_warmup_steps: int = setting(300, "Muon momentum rises 0.85 -> momentum_end over these steps.")
    momentum_end: float = setting(0.95, "Muon momentum after its warmup (nanochat 2026: 0.97).", 1)
    momentum_final: float | None = setting(
        None, "If set, Muon momentum falls linearly to this across the LR warmdown (nanochat 2026: 0.90).", 1)
    weight_decay_shape: WeightDecayShape = setting(
        "constant", "The matrices' weight decay over training: 'constant' or 'cosine' to 0 (nanochat 2026).")


@dataclass(frozen=True)
class Evaluation(Settings):
    """What is measured during training, and how often."""

    eval_every: int = setting(250, "Report validation bits per byte (eval_bpb) every this many steps; 0 disables "
                                   "(transformers' eval_steps follows it).")
    eval_tokens: int = setting(EVAL_TOKENS, "Validation tokens per evaluation (nanochat's eval_tokens); 0 = the "
                                            "whole split.")
    core_metric_every: int = setting(1000, "Run the benchmarks (CORE with core_bundle, the Hansard benchmark) every "
                                           "this many steps and at the end; 0 disables.")
    core_bundle: str | None = setting(None, "Folder of the CORE eval bundle (core.yaml, eval_data/, "
                                            "eval_meta_data.csv); none: no CORE during training.")
    core_max_per_task: int = setting(500, "Examples per task in CORE / Hansard benchmark runs during training.")
    sample_every: int = setting(2000, "Log greedy samples of fixed prompts every this many steps and at the end "
                                      "(needs the tokenizer); 0 disables.")


@dataclass(frozen=True)
class Checkpointing(Settings):
    """How much work a crash or a diverged run can lose."""

    save_every: int = setting(2000, "Save a resumable checkpoint every this many steps; 0: no checkpoints (recipes "
                                    "still save the final model). transformers' save_steps follows it.")
    save_every_minutes: float = setting(
        30.0, "Also save a checkpoint whenever this many minutes passed since the last one (0: off): a crash loses "
              "at most about this much work whatever the recipe's step time (d48's 2,000 steps take hours).",
        math.inf)
    loss_spike_factor: float = setting(
        2.0, "Stop the run (diverged) when a logged loss exceeds this many times the median of the last 20 logged "
             "losses (0: off; a loss that is not finite always stops it).", math.inf)


# HansardTrainingArguments' field for each group, in the order the options are documented
CONCERNS = {"budget": Budget, "muon": Muon, "adamw": AdamW, "schedule": Schedule, "evaluation": Evaluation,
            "checkpointing": Checkpointing, "fitting": Fitting}


def group_field(kind):
    """A field of an arguments class holding the settings group `kind` (its defaults unless given); its help is the
    group's docstring."""
    return field(default_factory=kind, metadata={"help": kind.__doc__.split("\n")[0]})


def flat(values: dict, concerns) -> dict:
    """An arguments class's `to_dict()` with each group's settings in place of the group, by their own names."""
    for concern in concerns:
        values.update(asdict(values.pop(concern)))
    return values


def into_groups(settings: dict, concerns: dict) -> dict:
    """Flat settings (`matrix_lr=0.01, bf16=True`) as keyword arguments of a class holding the groups `concerns`
    (field name -> group class): each group made of its own settings, the other settings as they are."""
    owner = {f.name: concern for concern, group in concerns.items() for f in fields(group)}
    grouped = {concern: {} for concern in concerns}
    rest = {}
    for name, value in settings.items():
        (grouped[owner[name]] if name in owner else rest)[name] = value
    return {**{concern: concerns[concern](**values) for concern, values in grouped.items()}, **rest}

"""HansardTrainingArguments and HansardTrainer: nanochat's training algorithm inside transformers' Trainer.

The Trainer builds one MuonAdamW optimizer and nanochat's LR/momentum schedule, derives the step count from the
Chinchilla ratio and the gradient accumulation from the token batch size, logs tokens/s and MFU, reports
validation bits per byte, and keeps the Trainer's checkpoint/resume, accelerate and callback machinery.
"""

import itertools
import json
import logging
import math
import os
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import DistributedDataParallelKwargs
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import IntervalStrategy, TrainOutput

from .budget import EVAL_TOKENS, STEP_SETTINGS, TOKENS_PER_PARAMETER, peak_flops, step_plan
from .checkpoints import (OutputDirLock, last_complete_checkpoint, mark_complete, problems, read_marker, rotate,
                          step_of, unmark)
from .distributed import all_finite, on_main_process, sharded
from .files import share_as_umask, write_error
from .evaluation import SAMPLES_FILE, evaluate_bpb, evaluate_tasks, sample
from .optimization import NanochatSchedule, muon_adamw
from .progress import eta_seconds, write_state
from .stopping import StopOnSignalOrSave, TrainingStopped
from .tokenization import tokenizer_fingerprint

logger = logging.getLogger(__name__)


# The numeric settings with a range (NaN is in none): learning rates and weight decay finite, fractions at most 1.
SETTING_RANGES = {"embedding_lr": math.inf, "unembedding_lr": math.inf, "matrix_lr": math.inf, "scalar_lr": math.inf,
                  "matrix_weight_decay": math.inf, "target_param_data_ratio": math.inf, "max_grad_norm": math.inf,
                  "warmup_ratio": 1, "warmdown_ratio": 1, "final_lr_frac": 1, "momentum_end": 1, "momentum_final": 1,
                  "normuon_beta2": 1, "save_every_minutes": math.inf, "loss_spike_factor": math.inf}
SPIKE_WINDOW, SPIKE_HISTORY = 20, 5  # the loss spike rule: the median of the last 20 logged losses, once 5 are logged


@dataclass
class HansardTrainingArguments(TrainingArguments):
    """TrainingArguments with nanochat's knobs; batch size and accumulation are derived from token counts."""

    embedding_lr: float = field(default=0.2, metadata={"help": "AdamW LR of the token embedding, times (hidden/768)^-0.5."})
    unembedding_lr: float = field(default=0.004, metadata={"help": "AdamW LR of lm_head, times (hidden/768)^-0.5."})
    matrix_lr: float = field(default=0.02, metadata={"help": "Muon LR of the 2-D block weights (x max(1, rows/cols)^0.5)."})
    scalar_lr: float = field(default=0.5, metadata={"help": "AdamW LR of the x0 lambdas (residual lambdas: 1/100 of it), for models with nanochat 2026's residual_lambdas."})
    adamw_groups: str = field(default="nanochat-2025", metadata={"help": "Betas and weight decay of the embedding and lm_head: 'nanochat-2025' (0.8/0.95, none) or 'nanochat-2026' (0.8/0.995 decay 0.001; 0.8/0.96 decay 0.01)."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Fraction of the steps spent warming the LR up linearly."})
    warmdown_ratio: float = field(default=0.2, metadata={"help": "Fraction of the steps at the end spent decaying the LR."})
    final_lr_frac: float = field(default=0.0, metadata={"help": "LR multiplier reached at the last step."})
    warmdown_shape: str = field(default="linear", metadata={"help": "Shape of the warmdown: 'linear' (nanochat) or 'cosine'."})
    momentum_warmup_steps: int = field(default=300, metadata={"help": "Muon momentum rises 0.85 -> momentum_end over these steps."})
    momentum_end: float = field(default=0.95, metadata={"help": "Muon momentum after its warmup (nanochat 2026: 0.97)."})
    momentum_final: float | None = field(default=None, metadata={"help": "If set, Muon momentum falls linearly to this across the LR warmdown (nanochat 2026: 0.90)."})
    muon_orthogonalizer: str = field(default="newton_schulz", metadata={"help": "'newton_schulz' (nanochat 10231df) or 'polar_express' (nanochat 2026, with MuonEq row equilibration)."})
    muon_plus: bool = field(default=False, metadata={"help": "Muon+ (nanochat 2026): snap each update's norm to sqrt(min(rows, cols))."})
    normuon_beta2: float | None = field(default=None, metadata={"help": "NorMuon variance reduction with this beta2 (nanochat 2026: 0.9); none: off."})
    matrix_weight_decay: float = field(default=0.0, metadata={"help": "Weight decay of the Muon matrices (nanochat 10231df: 0; 2026: 0.28, scaled by batch and tokens)."})
    cautious_weight_decay: bool = field(default=False, metadata={"help": "Decay the matrices at their LR only where update and weight agree in sign (nanochat 2026)."})
    weight_decay_shape: str = field(default="constant", metadata={"help": "The matrices' weight decay over training: 'constant' or 'cosine' to 0 (nanochat 2026)."})
    muon_compile: str = field(default="auto", metadata={"help": "torch.compile the Newton-Schulz step: 'auto' (on CUDA), 'true' or 'false'."})
    muon_ns_dtype: str = field(default="auto", metadata={"help": "Newton-Schulz dtype: 'auto' (bf16 on CUDA, fp32 on CPU), 'bfloat16' or 'float32'."})
    target_param_data_ratio: float = field(default=TOKENS_PER_PARAMETER, metadata={"help": "Training tokens per parameter; sets max_steps unless max_steps > 0."})
    parameter_count: str = field(default="all", metadata={"help": "The parameters target_param_data_ratio counts: 'all' (nanochat 10231df) or 'scaling' (block matrices + lm_head, nanochat 2026)."})
    total_batch_size: int = field(default=524288, metadata={"help": "Tokens per optimizer step, over all ranks and accumulation steps."})
    device_batch_size: int = field(default=32, metadata={"help": "Rows per device per micro-step (lowered to divide total_batch_size if needed)."})
    max_seq_len: int = field(default=2048, metadata={"help": "Tokens per row."})
    auto_activation_checkpointing: bool = field(default=True, metadata={"help": "On a GPU with bf16 under DDP, unless activation_checkpointing is set: checkpoint every n-th layer, with the largest n whose estimated peak memory (hansard_hf.memory) fits the GPU; none when everything fits. Logged. Applied by hansard_hf.fitting.fit_to_memory (hansard-hf train runs it before the Trainer)."})
    auto_micro_batch: bool = field(default=False, metadata={"help": "Before training, try one step at the micro-batch; on out-of-memory halve it and double the accumulation (logged), until it fits. Applied by hansard_hf.fitting.fit_to_memory (hansard-hf train runs it before the Trainer)."})
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
    train_sampling_strategy: str = field(default="sequential", metadata={"help": "Packed rows are read in order."})
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
        plan = step_plan(**{name: getattr(self, name) for name in STEP_SETTINGS}, config=config,
                         world_size=self.world_size)
        if plan.device_batch_size != asked:
            logger.warning(
                "device_batch_size=%d x max_seq_len=%d x world_size=%d does not divide total_batch_size=%d: using "
                "device_batch_size=%d with %d accumulation steps.", asked, self.max_seq_len, self.world_size,
                self.total_batch_size, plan.device_batch_size, plan.accumulation,
            )
        self.set_micro_batch(plan.device_batch_size, plan.accumulation)
        self.max_steps = plan.steps


class TrainingDiverged(ValueError):
    """The loss or the weights stopped being finite: the run stops, and nothing non-finite is kept as complete."""


class _AtMaxSteps(Exception):
    """Raised by StopAtMaxSteps: the resumed checkpoint is already at max_steps."""


class StopAtMaxSteps(TrainerCallback):
    """A run resumed from a checkpoint at its last step (killed during its final save) must train nothing; the
    Trainer's loop takes one step before it checks max_steps, so stop it at on_train_begin, once the checkpoint's
    weights and state are loaded (HansardTrainer.train catches this)."""

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps > 0:
            raise _AtMaxSteps


class RecipeToWandb(TrainerCallback):
    """Adds the whole recipe to the wandb run's config (the Trainer already logs arguments and model config)."""

    def __init__(self, recipe: dict):
        self.recipe = recipe

    def on_train_begin(self, args, state, control, **kwargs):
        import wandb

        if wandb.run is not None:
            wandb.config.update({"recipe": self.recipe}, allow_val_change=True)


class BenchmarksAndSamples(TrainerCallback):
    """Every core_metric_every steps (and at the end): the benchmark tasks (CORE when a bundle is configured, the
    Hansard benchmark); every sample_every steps (and at the end): greedy samples of fixed prompts."""

    def __init__(self, trainer: "HansardTrainer", tasks: list):
        self.trainer, self.tasks = trainer, tasks

    @staticmethod
    def _due(every: int, state) -> bool:
        return every > 0 and (state.global_step % every == 0 or state.global_step == state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        trainer, tokenizer = self.trainer, self.trainer.processing_class
        if tokenizer is None:
            return
        model = trainer.accelerator.unwrap_model(trainer.model)
        start = time.perf_counter()
        if self.tasks and self._due(args.core_metric_every, state):
            results = evaluate_tasks(model, tokenizer, self.tasks)
            logs = {f"bench/{label}": r["centered"] for label, r in results["tasks"].items()}
            for name, ours in (("core", False), ("hansard", True)):  # each benchmark's mean and its example count
                picked = [r for label, r in results["tasks"].items() if label.startswith("hansard_") == ours]
                if picked:
                    logs[f"{name}_metric"] = sum(r["centered"] for r in picked) / len(picked)
                    logs[f"{name}_examples"] = sum(r["examples"] for r in picked)
            flags = (control.should_log, control.should_evaluate, control.should_save)
            trainer.log(logs)  # logging resets the step's flags: keep the Trainer's own log/eval/save of this step
            control.should_log, control.should_evaluate, control.should_save = flags
        if self._due(args.sample_every, state) and (state.is_world_process_zero or sharded(model)):
            samples = sample(model, tokenizer)  # under FSDP2 every rank takes part; the first one keeps the samples
            if state.is_world_process_zero:
                self._keep(samples, args, state)
        trainer.exclude_from_throughput(time.perf_counter() - start)
        return control

    @staticmethod
    def _keep(samples: dict, args, state) -> None:
        """Log the samples, write them to the run's samples file and, with wandb, to a table."""
        for prompt, text in samples.items():
            logger.info("sample at step %d: %r -> %r", state.global_step, prompt, text)
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / SAMPLES_FILE).write_text(json.dumps({"step": state.global_step, "samples": samples}, indent=2))
        if "wandb" in args.report_to:
            import wandb

            if wandb.run is not None:
                rows = [[state.global_step, prompt, text] for prompt, text in samples.items()]
                wandb.log({"samples": wandb.Table(columns=["step", "prompt", "sample"], data=rows)})


class ThroughputClock(TrainerCallback):
    """Starts the step clock when training (re)starts, so a resumed run times only the steps it runs, and says in
    the run's state file that it runs."""

    def __init__(self, trainer: "HansardTrainer"):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._last_log, self.trainer._excluded = (time.perf_counter(), state.global_step), 0.0
        self.trainer._began = self.trainer._last_log
        self.trainer._record("running", "")


class HansardTrainer(Trainer):
    """transformers' Trainer with nanochat's optimizer, schedules, step count, throughput logs and bits per byte.

    `token_bytes` (a tensor of each token id's byte length, 0 for special tokens) enables `eval_bpb`.
    """

    def __init__(self, model=None, args: HansardTrainingArguments = None, token_bytes: torch.Tensor | None = None,
                 recipe: dict | None = None, benchmark_tasks: list | None = None, **kwargs):
        data_vocab = getattr(kwargs.get("train_dataset"), "vocab_size", None)
        if data_vocab is not None and data_vocab > model.config.vocab_size:
            raise ValueError(
                f"The training data was tokenized with a {data_vocab}-token vocabulary but the model has "
                f"vocab_size={model.config.vocab_size}: build the model with vocab_size >= {data_vocab}."
            )
        args.resolve(model.config)
        automatic = args.auto_micro_batch or (args.auto_activation_checkpointing and args.device.type == "cuda")
        if automatic and not getattr(args, "fitted_to_memory", False):
            logger.warning("auto_micro_batch and auto_activation_checkpointing are applied by hansard_hf.fitting."
                           "fit_to_memory(model, args, train_dataset) before the Trainer is built (hansard-hf train "
                           "does): this Trainer trains at %d rows per micro-step as given, checkpointing as set.",
                           args.per_device_train_batch_size)
        evaluation = kwargs.get("eval_dataset")
        needed = args.per_device_eval_batch_size * args.world_size
        if evaluation is not None and args.eval_strategy != IntervalStrategy.NO and len(evaluation) < needed:
            raise ValueError(
                f"The evaluation split has {len(evaluation)} rows, fewer than one evaluation batch "
                f"({args.per_device_eval_batch_size} rows x {args.world_size} processes): use more held-out data, "
                "a smaller device_batch_size or max_seq_len, or eval_every=0."
            )
        if evaluation is None and args.eval_strategy != IntervalStrategy.NO:
            args.eval_strategy = IntervalStrategy.NO
        self.token_bytes, self.recipe = token_bytes, recipe
        super().__init__(model=model, args=args, **kwargs)
        if recipe and "wandb" in args.report_to:
            self.add_callback(RecipeToWandb(recipe))
        self.add_callback(BenchmarksAndSamples(self, benchmark_tasks or []))
        self._flops_per_token = model.config.flops_per_token(args.max_seq_len)
        self._peak_flops = peak_flops(torch.cuda.get_device_name(args.device)) if args.device.type == "cuda" else None
        self._last_log = self._began = (time.perf_counter(), 0)  # (time, step) of the last log, of the start
        self._excluded = 0.0  # seconds spent evaluating, benchmarking or saving since the last training log
        self.add_callback(ThroughputClock(self))
        self.add_callback(StopAtMaxSteps())
        self.stopper = StopOnSignalOrSave()
        self.add_callback(self.stopper)

    def _build_accelerator_args(self, **kwargs):
        """As the Trainer's, with DDP's gradient buckets as views of the gradients: one fewer copy of them per GPU."""
        built = super()._build_accelerator_args(**kwargs)
        for handler in built.get("kwargs_handlers", []):
            if isinstance(handler, DistributedDataParallelKwargs):
                handler.gradient_as_bucket_view = True
        return built

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = muon_adamw(self.model, self.args)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = NanochatSchedule.from_arguments(optimizer or self.optimizer, num_training_steps, self.args)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def train(self, resume_from_checkpoint=None, **kwargs):
        """As Trainer.train, holding the output folder (one live run per folder); `resume_from_checkpoint=True` takes
        the newest checkpoint whose manifest holds (none: start fresh). A checkpoint made with another tokenizer
        than this Trainer's `processing_class` is refused. SIGTERM, SIGINT or SIGUSR1 stop it at a step boundary
        with a complete checkpoint, then raise TrainingStopped. How it ended goes to the run's state file."""
        lock = OutputDirLock(self.args.output_dir)
        on_main_process(lock.acquire)  # a refusal stops every process
        try:
            output = self._train(resume_from_checkpoint, **kwargs)
        except TrainingStopped as stop:
            self._record("stopped", f"by {stop.signal_name}; {stop.checkpoint.name} is complete: the same command "
                         "resumes from it")
            raise
        except TrainingDiverged as error:
            self._record("diverged", f"{error}")
            raise
        except BaseException as error:
            self._record("crashed", f"{type(error).__name__}: {error}".splitlines()[0])
            raise
        finally:
            self.stopper.restore()
            lock.release()
        self._record("trained", "training done; evaluating and saving the model")
        return output

    def _record(self, state: str, reason: str) -> None:
        """The run's state file, from the main process."""
        if self.is_world_process_zero():
            write_state(self.args.output_dir, state=state, reason=reason, step=self.state.global_step,
                        max_steps=self.state.max_steps)

    def _train(self, resume_from_checkpoint, **kwargs):
        """Resolve the checkpoint to resume from, train, and raise TrainingStopped if a signal stopped it."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                logger.info("No complete checkpoint in %s: starting from scratch.", self.args.output_dir)
        elif resume_from_checkpoint:
            found = problems(resume_from_checkpoint)
            if found:
                raise ValueError(f"{resume_from_checkpoint} is not a complete checkpoint: {'; '.join(found)}.")
        if resume_from_checkpoint:
            self._check_tokenizer(resume_from_checkpoint)
            if self.is_world_process_zero():
                logger.warning("Resuming from %s (step %d), every file checked against its manifest.",
                               resume_from_checkpoint, step_of(resume_from_checkpoint) or 0)
        try:
            output = super().train(resume_from_checkpoint=str(resume_from_checkpoint) if resume_from_checkpoint
                                   else None, **kwargs)
        except _AtMaxSteps:  # the weights and state of the last step are loaded: there is nothing to train
            self.is_in_train = False
            return TrainOutput(self.state.global_step, 0.0, {})
        if self.stopper.stopped_by:
            self.accelerator.wait_for_everyone()  # the main process has marked the checkpoint: all exit together
            step = self.state.global_step
            raise TrainingStopped(self.stopper.stopped_by, step, Path(self.args.output_dir) / f"checkpoint-{step}")
        return output

    def _check_tokenizer(self, checkpoint) -> None:
        saved, mine = (read_marker(checkpoint) or {}).get("tokenizer"), tokenizer_fingerprint(self.processing_class)
        if saved and mine and saved != mine:
            raise ValueError(f"{checkpoint} was trained with tokenizer {saved}; this run's is {mine}: other token ids. "
                             "Resume with the checkpoint's tokenizer (saved in it), or train into a new output_dir.")

    def _save_checkpoint(self, model, trial):
        """As Trainer's, made safe: the folder loses its marker before anything in it is rewritten, the marker (a
        manifest of every file) is written last, and old checkpoints are rotated only after that."""
        start = time.perf_counter()
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        self._check_finite("the weights are not finite (no checkpoint written)")
        if self.args.should_save:
            unmark(folder)
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # no rotation inside the write
        try:
            super()._save_checkpoint(model, trial)
        except Exception as error:  # a full disk, a lost mount: say which checkpoint, and what a rerun does
            if (failed := write_error(error)) is None:
                raise
            previous = last_complete_checkpoint(folder.parent, warn=False)
            raise OSError(failed.errno, f"writing {folder} failed ({failed}); it stays incomplete and is never "
                          f"resumed from. Free some space and run again: it resumes from {previous or 'the start'}."
                          ) from error
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            share_as_umask(folder)
            mark_complete(folder, self.state.global_step, tokenizer_fingerprint(self.processing_class))
            rotate(folder.parent, limit, keep=[self.state.best_model_checkpoint], save_every=self.args.save_every)
        self.exclude_from_throughput(time.perf_counter() - start)

    def save_model(self, output_dir=None, _internal_call=False):
        """As Trainer's. Under FSDP with a sharded state dict type the Trainer saves no weights; the model (not a
        checkpoint, which keeps its sharded files for resuming) is then gathered whole, so the folder holds the full
        weights that from_pretrained and the export read. A model whose weights are not finite is never saved."""
        if not _internal_call:
            self._check_finite("the weights are not finite (the model is not saved)")
        if (not self.is_fsdp_enabled or _internal_call
                or "FULL_STATE_DICT" in str(self.accelerator.state.fsdp_plugin.state_dict_type)):
            return super().save_model(output_dir, _internal_call)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # on the main process only
        self._save(output_dir or self.args.output_dir, state_dict=get_model_state_dict(self.model, options=options))

    def _save(self, output_dir=None, state_dict=None):
        """As Trainer's, into a hidden folder whose files then replace the old ones, one rename each: a kill or a full
        disk never leaves a half-written model.safetensors under its name. The files get the umask's permissions."""
        out = Path(output_dir or self.args.output_dir)
        if not self.args.should_save:
            return super()._save(str(out), state_dict)
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".saving-*"):  # a killed save's (one live run per folder: none is in progress)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = out / f".saving-{os.getpid()}"
        try:
            super()._save(str(tmp), state_dict)
            share_as_umask(tmp)
            for path in tmp.iterdir():
                os.replace(path, out / path.name)
        except Exception as error:  # torch and safetensors report a full disk in their own types
            if (failed := write_error(error)) is None:
                raise
            raise OSError(failed.errno, f"writing the model to {out} failed ({failed}); the files there are as they "
                          "were. Free some space and save again.") from error
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _push_from_checkpoint(self, checkpoint_folder):
        """Ship the modeling code and the model card with every push, so the repo root always loads."""
        if self.args.should_save:
            for code in Path(checkpoint_folder).glob("*.py"):
                shutil.copy(code, self.args.output_dir)
            self.create_model_card()
        return super()._push_from_checkpoint(checkpoint_folder)

    def create_model_card(self, **kwargs):
        """Our card (recipe, parameters, tokens, bpb, curves, usage) instead of the generic fine-tuning one."""
        from .card import model_card, plot

        if not self.is_world_process_zero():
            return
        out = Path(self.args.output_dir)
        self.state.save_to_json(str(out / "trainer_state.json"))
        if any("loss" in entry for entry in self.state.log_history):
            plot(out)
        card = model_card(out, self.model.config, self.recipe, self.args.total_batch_size, self.args.hub_model_id)
        (out / "README.md").write_text(card)

    def floating_point_ops(self, inputs) -> int:
        """Training FLOPs of a micro-batch by nanochat's estimate (attention included), for `total_flos`."""
        return self.model.floating_point_ops(inputs)

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy == "sequential":
            return SequentialSampler(train_dataset or self.train_dataset)
        return super()._get_train_sampler(train_dataset)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add lrm, step time, tokens/s, MFU (on a GPU with a known peak), tokens seen, elapsed time and the ETA to
        the training logs, and keep the run's state file; a loss that is not finite, or far above the running median
        (loss_spike_factor), stops the run (the logged loss is already on the host: no sync is added)."""
        if "loss" in logs:
            self._check_loss(logs["loss"])
            now, step = time.perf_counter(), self.state.global_step
            last_time, last_step = self._last_log
            if step > last_step:
                step_time = (now - last_time - self._excluded) / (step - last_step)
                tokens_per_sec = self.args.total_batch_size / step_time
                logs.update(lrm=self.lr_scheduler.multiplier(step - 1), step_time=step_time, tokens_per_sec=tokens_per_sec)
                if self._peak_flops:
                    logs["mfu"] = self._flops_per_token * tokens_per_sec / (self._peak_flops * self.args.world_size)
            began, began_step = self._began
            eta = eta_seconds(step, self.state.max_steps, now - began, step - began_step)
            logs.update(tokens_seen=step * self.args.total_batch_size, elapsed_s=now - began,
                        **({"eta_s": eta} if eta is not None else {}))
            self._last_log, self._excluded = (now, step), 0.0
        super().log(logs, start_time)
        if self.is_world_process_zero() and Path(self.args.output_dir).is_dir():
            progress = {key: logs[key] for key in ("tokens_seen", "elapsed_s", "eta_s") if key in logs}
            if "eval_bpb" in logs:
                progress.update(eval_bpb=logs["eval_bpb"], eval_step=self.state.global_step)
            if "loss" in logs:
                progress.update(state="running", reason="", step=self.state.global_step, max_steps=self.state.max_steps,
                                tokens_total=self.state.max_steps * self.args.total_batch_size)
            if progress:
                write_state(self.args.output_dir, **progress)

    def _check_loss(self, loss: float) -> None:
        """Stop on a loss that is not finite, or above loss_spike_factor x the median of the last logged losses."""
        if not math.isfinite(loss):
            self._diverged(f"step {self.state.global_step}: the training loss is {loss}")
        history = [entry["loss"] for entry in self.state.log_history[-3 * SPIKE_WINDOW:] if "loss" in entry]
        history = history[-SPIKE_WINDOW:]  # the log history is restored on resume: the rule holds across restarts
        factor = self.args.loss_spike_factor
        if factor > 0 and len(history) >= SPIKE_HISTORY and loss > factor * (median := statistics.median(history)):
            self._diverged(f"step {self.state.global_step}: the training loss is {loss:.4f}, over {factor:g}x the "
                           f"median {median:.4f} of the last {len(history)} logged losses (loss_spike_factor)")

    def _check_finite(self, what: str) -> None:
        """Stop with TrainingDiverged unless every weight is finite (one host sync, in every process)."""
        if not all_finite(self.model):
            self._diverged(f"step {self.state.global_step}: {what}")

    def _diverged(self, what: str) -> None:
        last = on_main_process(lambda: last_complete_checkpoint(self.args.output_dir, warn=False))
        raise TrainingDiverged(f"{what}: the run diverged and stopped. Its last complete checkpoint is "
                               f"{last or 'none (nothing was saved before)'}; lower the learning rates (or check the "
                               "data) and run again.")

    def exclude_from_throughput(self, seconds: float) -> None:
        """Time spent outside training steps (evaluation, benchmarks, checkpoints) is not step time."""
        self._excluded += seconds

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Validation loss and, when `token_bytes` is known, bits per byte (`eval_bpb`)."""
        start = time.perf_counter()
        loader = self.get_eval_dataloader(eval_dataset)
        if self.args.eval_tokens > 0:
            per_batch = self.args.per_device_eval_batch_size * self.args.max_seq_len * self.args.world_size
            loader = itertools.islice(loader, max(1, self.args.eval_tokens // per_batch))
        self.model.eval()
        metrics = evaluate_bpb(self.model, loader, self.token_bytes)
        self.model.train()
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in metrics.items()}
        self.exclude_from_throughput(time.perf_counter() - start)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

"""HansardTrainer: nanochat's training algorithm inside transformers' Trainer.

The Trainer builds one MuonAdamW optimizer and nanochat's LR/momentum schedule, derives the step count from the
Chinchilla ratio and the gradient accumulation from the token batch size, logs tokens/s and MFU, reports
validation bits per byte, and keeps the Trainer's checkpoint/resume, accelerate and callback machinery. Its
arguments are in `arguments.py`, its callbacks in `callbacks.py`, its crash-safe saving in `saving.py`.
"""

import itertools
import logging
import math
import statistics
import time
from pathlib import Path

import torch
from transformers.trainer_utils import IntervalStrategy, TrainOutput

from .arguments import HansardTrainingArguments
from .budget import peak_flops
from .callbacks import (AtMaxSteps, BenchmarksAndSamples, CodeAndCardWithEachPush, RecipeToWandb, RunStateFile,
                        StopAtMaxSteps, ThroughputClock)
from .checkpoints import OutputDirLock, last_complete_checkpoint, other_tokenizer, problems, step_of
from .distributed import on_main_process
from .evaluation import evaluate_bpb
from .optimization import nanochat_schedule, muon_adamw
from .progress import eta_seconds, write_state
from .saving import CrashSafeSaving
from .stopping import StopOnSignalOrSave, TrainingDiverged, TrainingStopped, diverged
from .tokenization import tokenizer_fingerprint

logger = logging.getLogger(__name__)

SPIKE_WINDOW, SPIKE_HISTORY = 20, 5  # the loss spike rule: the median of the last 20 logged losses, once 5 are logged


class HansardTrainer(CrashSafeSaving):
    """transformers' Trainer with nanochat's optimizer, schedules, step count, throughput logs and bits per byte.

    `token_bytes` (a tensor of each token id's byte length, 0 for special tokens) enables `eval_bpb`. `train` holds
    `output_lock` (one live run per output folder; by default a lock of its own), which a caller that writes into the
    folder before and after training (`hansard-hf train`) takes first and passes in.
    """

    def __init__(self, model=None, args: HansardTrainingArguments = None, token_bytes: torch.Tensor | None = None,
                 recipe: dict | None = None, benchmark_tasks: list | None = None,
                 output_lock: OutputDirLock | None = None, **kwargs):
        data_vocab = getattr(kwargs.get("train_dataset"), "vocab_size", None)
        if data_vocab is not None and data_vocab > model.config.vocab_size:
            raise ValueError(
                f"The training data was tokenized with a {data_vocab}-token vocabulary but the model has "
                f"vocab_size={model.config.vocab_size}: build the model with vocab_size >= {data_vocab}."
            )
        args.resolve(model.config)
        automatic = args.fitting.auto_micro_batch or (args.fitting.auto_activation_checkpointing and args.device.type == "cuda")
        if automatic and not getattr(args, "fitted_to_memory", False):
            logger.warning("auto_micro_batch and auto_activation_checkpointing are applied by hansard_hf.memory."
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
        self.output_lock = output_lock or OutputDirLock(args.output_dir)
        super().__init__(model=model, args=args, **kwargs)
        if recipe and "wandb" in args.report_to:
            self.add_callback(RecipeToWandb(recipe))
        self.add_callback(BenchmarksAndSamples(self, benchmark_tasks or []))
        self._flops_per_token = model.config.flops_per_token(args.budget.max_seq_len)
        self._peak_flops = peak_flops(torch.cuda.get_device_name(args.device)) if args.device.type == "cuda" else None
        self.clock, self.schedule = ThroughputClock(), None
        for callback in (self.clock, RunStateFile(), CodeAndCardWithEachPush(self)):
            self.add_callback(callback)
        self.add_callback(StopAtMaxSteps())
        self.stopper = StopOnSignalOrSave()
        self.add_callback(self.stopper)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = muon_adamw(self.model, self.args)
        return self.optimizer

    def create_accelerator_and_postprocess(self) -> None:
        """As the Trainer's, with DDP's gradient buckets as views of the gradients: one fewer copy of them per GPU."""
        super().create_accelerator_and_postprocess()
        if self.accelerator.ddp_handler is not None:
            self.accelerator.ddp_handler.gradient_as_bucket_view = True

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """nanochat's schedule, built anew for each `train` (unless a scheduler was passed in)."""
        if self.lr_scheduler is None or self.lr_scheduler is self.schedule:
            self.schedule = nanochat_schedule(optimizer or self.optimizer, num_training_steps, self.args)
            self.lr_scheduler = self.schedule
        return self.lr_scheduler

    def train(self, resume_from_checkpoint=None, **kwargs):
        """As Trainer.train, holding the output folder (one live run per folder); `resume_from_checkpoint=True` takes
        the newest checkpoint whose manifest holds (none: start fresh). A checkpoint made with another tokenizer
        than this Trainer's `processing_class` is refused. SIGTERM, SIGINT or SIGUSR1 stop it at a step boundary
        with a complete checkpoint, then raise TrainingStopped. How it ended goes to the run's state file."""
        on_main_process(self.output_lock.acquire)  # a refusal stops every process
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
            self.output_lock.release()
        self._record("trained", "training done; evaluating and saving the model")
        return output

    def _record(self, what: str, reason: str) -> None:
        RunStateFile.record(self.args, self.state, what, reason, self.is_world_process_zero())

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
            mine = tokenizer_fingerprint(self.processing_class)
            if saved := other_tokenizer(resume_from_checkpoint, mine):
                raise ValueError(f"{resume_from_checkpoint} was trained with tokenizer {saved}; this run's is {mine}: "
                                 "other token ids. Resume with the checkpoint's tokenizer (saved in it), or train into "
                                 "a new output_dir.")
            if self.is_world_process_zero():
                logger.warning("Resuming from %s (step %d), every file checked against its manifest.",
                               resume_from_checkpoint, step_of(resume_from_checkpoint) or 0)
        try:
            output = super().train(resume_from_checkpoint=str(resume_from_checkpoint) if resume_from_checkpoint
                                   else None, **kwargs)
        except AtMaxSteps:  # the weights and state of the last step are loaded: there is nothing to train
            self.is_in_train = False
            return TrainOutput(self.state.global_step, 0.0, {})
        if self.stopper.stopped_by:
            self.accelerator.wait_for_everyone()  # the main process has marked the checkpoint: all exit together
            step = self.state.global_step
            raise TrainingStopped(self.stopper.stopped_by, step, Path(self.args.output_dir) / f"checkpoint-{step}")
        return output

    def create_model_card(self, **kwargs):
        """Our card (recipe, parameters, tokens, bpb, curves, usage) instead of the generic fine-tuning one."""
        from .card import model_card, plot

        if not self.is_world_process_zero():
            return
        out = Path(self.args.output_dir)
        self.state.save_to_json(str(out / "trainer_state.json"))
        if any("loss" in entry for entry in self.state.log_history):
            plot(out)
        card = model_card(out, self.model.config, self.recipe, self.args.budget.total_batch_size, self.args.hub_model_id)
        (out / "README.md").write_text(card)

    def floating_point_ops(self, inputs) -> int:
        """Training FLOPs of a micro-batch by nanochat's estimate (attention included), for `total_flos`."""
        return self.model.floating_point_ops(inputs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add lrm, step time, tokens/s, MFU (on a GPU with a known peak), tokens seen, elapsed time and the ETA to
        the training logs, and keep the run's state file; a loss that is not finite, or far above the running median
        (loss_spike_factor), stops the run (the logged loss is already on the host: no sync is added)."""
        if "loss" in logs:
            self._check_loss(logs["loss"])
            step, lap = self.state.global_step, self.clock.lap(self.state.global_step)
            if "step_time" in lap:
                step_time = lap["step_time"]
                tokens_per_sec = self.args.budget.total_batch_size / step_time
                logs.update(lrm=self.lr_scheduler.multiplier(step - 1), step_time=step_time,
                            tokens_per_sec=tokens_per_sec)
                if self._peak_flops:
                    logs["mfu"] = self._flops_per_token * tokens_per_sec / (self._peak_flops * self.args.world_size)
            eta = eta_seconds(step, self.state.max_steps, lap["elapsed_s"], lap["steps_timed"])
            logs.update(tokens_seen=step * self.args.budget.total_batch_size, elapsed_s=lap["elapsed_s"],
                        **({"eta_s": eta} if eta is not None else {}))
        super().log(logs, start_time)
        if self.is_world_process_zero() and Path(self.args.output_dir).is_dir():
            progress = {key: logs[key] for key in ("tokens_seen", "elapsed_s", "eta_s") if key in logs}
            if "eval_bpb" in logs:
                progress.update(eval_bpb=logs["eval_bpb"], eval_step=self.state.global_step)
            if "loss" in logs:
                progress.update(state="running", reason="", step=self.state.global_step, max_steps=self.state.max_steps,
                                tokens_total=self.state.max_steps * self.args.budget.total_batch_size)
            if progress:
                write_state(self.args.output_dir, **progress)

    def _check_loss(self, loss: float) -> None:
        """Stop on a loss that is not finite, or above loss_spike_factor x the median of the last logged losses."""
        if not math.isfinite(loss):
            raise diverged(f"step {self.state.global_step}: the training loss is {loss}", self.args.output_dir)
        history = [entry["loss"] for entry in self.state.log_history[-3 * SPIKE_WINDOW:] if "loss" in entry]
        history = history[-SPIKE_WINDOW:]  # the log history is restored on resume: the rule holds across restarts
        factor = self.args.checkpointing.loss_spike_factor
        if factor > 0 and len(history) >= SPIKE_HISTORY and loss > factor * (median := statistics.median(history)):
            raise diverged(f"step {self.state.global_step}: the training loss is {loss:.4f}, over {factor:g}x the "
                           f"median {median:.4f} of the last {len(history)} logged losses (loss_spike_factor)",
                           self.args.output_dir)

    def exclude_from_throughput(self, seconds: float) -> None:
        """Time spent outside training steps (evaluation, benchmarks, checkpoints) is not step time."""
        self.clock.exclude(seconds)

    def save_every(self) -> int:
        return self.args.checkpointing.save_every

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Validation loss and, when `token_bytes` is known, bits per byte (`eval_bpb`)."""
        start = time.perf_counter()
        loader = self.get_eval_dataloader(eval_dataset)
        if self.args.evaluation.eval_tokens > 0:
            per_batch = self.args.per_device_eval_batch_size * self.args.budget.max_seq_len * self.args.world_size
            loader = itertools.islice(loader, max(1, self.args.evaluation.eval_tokens // per_batch))
        self.model.eval()
        metrics = evaluate_bpb(self.model, loader, self.token_bytes)
        self.model.train()
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in metrics.items()}
        self.exclude_from_throughput(time.perf_counter() - start)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

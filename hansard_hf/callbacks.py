"""The Trainer callbacks of a run, each with its own state: the step clock, the run's state file, the benchmarks
and samples, the recipe in wandb, the stop at a resumed run's last step, and the code and card with each push."""

import json
import logging
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from .distributed import sharded
from .evaluation import SAMPLES_FILE, evaluate_tasks, sample
from .progress import write_state

logger = logging.getLogger(__name__)


class AtMaxSteps(Exception):
    """Raised by StopAtMaxSteps: the resumed checkpoint is already at max_steps."""


class StopAtMaxSteps(TrainerCallback):
    """A run resumed from a checkpoint at its last step (killed during its final save) must train nothing; the
    Trainer's loop takes one step before it checks max_steps, so stop it at on_train_begin, once the checkpoint's
    weights and state are loaded (HansardTrainer.train catches this)."""

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps > 0:
            raise AtMaxSteps


class RecipeToWandb(TrainerCallback):
    """Adds the whole recipe to the wandb run's config (the Trainer already logs arguments and model config)."""

    def __init__(self, recipe: dict):
        self.recipe = recipe

    def on_train_begin(self, args, state, control, **kwargs):
        import wandb

        if wandb.run is not None:
            wandb.config.update({"recipe": self.recipe}, allow_val_change=True)


class ThroughputClock(TrainerCallback):
    """Times the training steps from when training (re)starts, so a resumed run times only the steps it runs; time
    spent outside steps (evaluation, benchmarks, checkpoints) is excluded from step time."""

    def __init__(self):
        self.start(0)

    def start(self, step: int) -> None:
        self.last = self.began = (time.perf_counter(), step)  # (time, step) of the last lap, of the start
        self.excluded = 0.0  # seconds outside training steps since the last lap

    def on_train_begin(self, args, state, control, **kwargs):
        self.start(state.global_step)

    def exclude(self, seconds: float) -> None:
        self.excluded += seconds

    def lap(self, step: int) -> dict[str, float]:
        """Seconds per step since the last lap (when steps were taken), seconds since the start, and the steps
        timed since the start, as `step_time`, `elapsed_s` and `steps_timed`."""
        now, (last_time, last_step), (began, began_step) = time.perf_counter(), self.last, self.began
        lap = {"elapsed_s": now - began, "steps_timed": step - began_step}
        if step > last_step:
            lap["step_time"] = (now - last_time - self.excluded) / (step - last_step)
        self.last, self.excluded = (now, step), 0.0
        return lap


class RunStateFile(TrainerCallback):
    """The run's state file (`hansard-hf status`): running once training (re)starts; HansardTrainer records how it
    ended through `record`."""

    @staticmethod
    def record(args, state, what: str, reason: str, main_process: bool) -> None:
        """`what` the run is (running, stopped, diverged, ...) and why, at its step; written by the main process."""
        if main_process:
            write_state(args.output_dir, state=what, reason=reason, step=state.global_step, max_steps=state.max_steps)

    def on_train_begin(self, args, state, control, **kwargs):
        self.record(args, state, "running", "", state.is_world_process_zero)


class BenchmarksAndSamples(TrainerCallback):
    """Every core_metric_every steps (and at the end): the benchmark tasks (CORE when a bundle is configured, the
    Hansard benchmark); every sample_every steps (and at the end): greedy samples of fixed prompts. Logged through
    the trainer; their time is not step time."""

    def __init__(self, trainer, tasks: list):
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
        if self.tasks and self._due(args.evaluation.core_metric_every, state):
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
        if self._due(args.evaluation.sample_every, state) and (state.is_world_process_zero or sharded(model)):
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


class CodeAndCardWithEachPush(TrainerCallback):
    """Before each push to the Hub, the modeling code (from the newest checkpoint) and a fresh model card go into
    the output folder the Trainer uploads, so the repo's root always loads and describes the run."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_push_begin(self, args, state, control, **kwargs):
        if not self.trainer.is_in_train:  # Trainer.push_to_hub after training saves the model and writes its card
            return
        for code in (Path(args.output_dir) / f"checkpoint-{state.global_step}").glob("*.py"):
            shutil.copy(code, args.output_dir)
        self.trainer.create_model_card()

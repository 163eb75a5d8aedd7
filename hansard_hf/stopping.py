"""Stopping a run cleanly, and saving on a clock.

SIGTERM (SLURM's preemption and `scancel`, Kubernetes), SIGINT (Ctrl-C) and SIGUSR1 (SLURM's `--signal=USR1@N`
before a time limit) make every process stop at the same optimizer step, after one complete checkpoint of that step;
the process then exits 128 + the signal's number, the status a process killed by it has (`hansard-hf train`). A repeated
signal while stopping changes nothing (a launcher forwards the signal its processes already got); SIGKILL stops at
once, and a checkpoint cut short is never marked complete. `save_every_minutes` adds a checkpoint whenever that long
has passed since the last one (unless save_every=0: no checkpoints); such interim checkpoints (and a stop's) go once
a newer one is complete (`checkpoints.rotate`). The processes agree through one all-reduce of two integers per step on the CPU (gloo):
a signal may reach only some of them, and no GPU work waits for it.
"""

import logging
import signal
import threading
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from .checkpoints import last_complete_checkpoint
from .distributed import all_finite, is_distributed, on_main_process

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class TrainingStopped(Exception):
    """A signal stopped the run after a complete checkpoint; the same command run again resumes from it."""

    def __init__(self, signum: int, step: int, checkpoint):
        self.signum, self.step, self.checkpoint = signum, step, Path(checkpoint)
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name} at step {step:,}: {checkpoint} is complete. Run the same "
                         "command again to resume from it.")

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as for a process the signal killed (SIGTERM: 143, SIGINT: 130, SIGUSR1: 138)."""
        return 128 + self.signum


class TrainingDiverged(ValueError):
    """The loss or the weights stopped being finite: the run stops, and nothing non-finite is kept as complete."""


def diverged(what: str, output_dir) -> TrainingDiverged:
    """The error that stops a diverged run: what went wrong, its last complete checkpoint, and what to change."""
    last = on_main_process(lambda: last_complete_checkpoint(output_dir, warn=False))
    return TrainingDiverged(f"{what}: the run diverged and stopped. Its last complete checkpoint is "
                            f"{last or 'none (nothing was saved before)'}; lower the learning rates (or check the "
                            "data) and run again.")


def refuse_non_finite(model, step: int, what: str, output_dir) -> None:
    """Stop with TrainingDiverged unless every weight of `model` is finite (one host sync, in every process)."""
    if not all_finite(model):
        raise diverged(f"step {step}: {what}", output_dir)


def _cpu_group():
    """The process group the stop flags travel in: the default one where it has gloo, else a gloo group of every
    process (NCCL would make the flags a GPU sync); None in a single process."""
    if not is_distributed():
        return None
    import torch.distributed as dist

    return dist.group.WORLD if "gloo" in str(dist.get_backend()) else dist.new_group(backend="gloo")


class StopOnSignalOrSave(TrainerCallback):
    """Stops every process at one step boundary on a signal, with a checkpoint; saves every `save_every_minutes`.
    `stopped_by` holds the signal's number once a stop was agreed (0 before)."""

    def __init__(self):
        self.received, self.stopped_by, self._previous, self._group = 0, 0, {}, None
        self._last_save = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.received = self.stopped_by = 0
        self._last_save = time.monotonic()
        self._group = _cpu_group()
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            self._previous = {signum: signal.signal(signum, self._receive) for signum in STOP_SIGNALS}

    def _receive(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.received:
            logger.warning("%s received: already stopping after the current step, once its checkpoint is saved "
                           "(SIGKILL stops at once and loses it).", name)
            return
        self.received = signum
        logger.warning("%s received: stopping after the current step, once its checkpoint is saved.", name)

    def on_step_end(self, args, state, control, **kwargs):
        minutes = args.checkpointing.save_every_minutes
        due = minutes > 0 and args.checkpointing.save_every > 0 and time.monotonic() - self._last_save >= 60 * minutes
        flags = torch.tensor([self.received, int(due)], dtype=torch.int64)
        if self._group is not None:
            import torch.distributed as dist

            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self._group)
        signum, due = flags.tolist()
        if signum:
            self.stopped_by = signum
            control.should_save = control.should_training_stop = True
        elif due:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self._last_save = time.monotonic()

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()

    def restore(self) -> None:
        """Put back the signal handlers there were before training (also when training ended in an error)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

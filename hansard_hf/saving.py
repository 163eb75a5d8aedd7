"""Crash-safe saving for the Trainer: checkpoints marked complete by a manifest written last, models written under
a hidden name and renamed into place, full weights gathered from FSDP, and no non-finite weights saved.

transformers has no public hook around the writing of a checkpoint or a model's files, so this overrides the
Trainer's `_save_checkpoint` and `_save` (ARCHITECTURE.md lists why; tests/test_trainer.py fails by name when
a transformers release changes them).
"""

import os
import shutil
import time
from pathlib import Path

from transformers import Trainer

from .checkpoints import last_complete_checkpoint, mark_complete, rotate, unmark
from .files import share_as_umask, write_error
from .stopping import refuse_non_finite
from .tokenization import tokenizer_fingerprint


class CrashSafeSaving(Trainer):
    """The Trainer's saving, made safe against kills, full disks and divergence: the base of HansardTrainer (whose
    `exclude_from_throughput` keeps a checkpoint's time out of step time, and whose `save_every` tells interim
    checkpoints to rotate) and of HansardSFTTrainer."""

    def exclude_from_throughput(self, seconds: float) -> None:
        """Time spent outside training steps: a trainer that measures its step time leaves it out."""

    def save_every(self) -> int:
        """The regular checkpoint interval; 0: every checkpoint is a regular one (none is saved by clock or signal)."""
        return 0

    def _save_checkpoint(self, model, trial):
        """As Trainer's, made safe: the folder loses its marker before anything in it is rewritten, the marker (a
        manifest of every file) is written last, and old checkpoints are rotated only after that."""
        start = time.perf_counter()
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        refuse_non_finite(self.model, self.state.global_step, "the weights are not finite (no checkpoint written)",
                          self.args.output_dir)
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
            rotate(folder.parent, limit, keep=[self.state.best_model_checkpoint], save_every=self.save_every())
        self.exclude_from_throughput(time.perf_counter() - start)

    def save_model(self, output_dir=None, _internal_call=False):
        """As Trainer's. Under FSDP with a sharded state dict type the Trainer saves no weights; the model (not a
        checkpoint, which keeps its sharded files for resuming) is then gathered whole, so the folder holds the full
        weights that from_pretrained and the export read. A model whose weights are not finite is never saved."""
        if not _internal_call:
            refuse_non_finite(self.model, self.state.global_step, "the weights are not finite (the model is not saved)",
                              self.args.output_dir)
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

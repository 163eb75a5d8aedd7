"""`python tests/faulty_cli.py FAULT VALUE ARGS...`: `hansard-hf ARGS` with a fault injected (for tests):

- `slow-marking FILE`: each checkpoint's marking first writes the checkpoint's folder to FILE and waits two seconds
  (a test sends a signal, or SIGKILL, while a checkpoint is being completed);
- `killed-once STEP`: the first attempt under torchrun (TORCHELASTIC_RESTART_COUNT=0) SIGKILLs itself at the end of
  step STEP, as a lost process dies (torchrun's --max-restarts starts it again);
- `sft-killed STEP`: `hansard-hf sft` SIGKILLs itself as it starts the step after STEP.
"""

import os
import signal
import sys
import time
from pathlib import Path

import hansard_hf.saving as saving
from hansard_hf.cli import main
from hansard_hf.stopping import StopOnSignalOrSave

FAULT, VALUE = sys.argv[1:3]
MARK_COMPLETE, ON_STEP_END = saving.mark_complete, StopOnSignalOrSave.on_step_end


def slow_mark_complete(folder, *args, **kwargs):
    Path(VALUE).write_text(str(folder))
    time.sleep(2)
    return MARK_COMPLETE(folder, *args, **kwargs)


def killed_once(self, args, state, control, **kwargs):
    if state.global_step == int(VALUE) and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0":
        os.kill(os.getpid(), signal.SIGKILL)
    return ON_STEP_END(self, args, state, control, **kwargs)


def sft_killed(self, *args, **kwargs):
    if self.state.global_step == int(VALUE):
        os.kill(os.getpid(), signal.SIGKILL)
    return SFT_STEP(self, *args, **kwargs)


SFT_STEP = None  # set by the fault, which alone imports TRL


if FAULT == "slow-marking":
    saving.mark_complete = slow_mark_complete
elif FAULT == "killed-once":
    StopOnSignalOrSave.on_step_end = killed_once
elif FAULT == "sft-killed":
    from hansard_hf.finetuning import HansardSFTTrainer

    SFT_STEP, HansardSFTTrainer.training_step = HansardSFTTrainer.training_step, sft_killed
else:
    raise SystemExit(f"faulty_cli.py: unknown fault {FAULT!r}")
sys.exit(main(sys.argv[3:]))

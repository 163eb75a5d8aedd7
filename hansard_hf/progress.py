"""Where a run stands, from its folder alone: `run_state.json`, rewritten (atomically) by the main process at every
training log and when training ends (finished, stopped by a signal, diverged, crashed); the folder lock tells a live
run from a dead one; `hansard-hf status RUN` reads both, and the checkpoints."""

import json
import os
import socket
import time
from pathlib import Path

from .checkpoints import COMPLETE_MARKER, LOCK_FILE, checkpoints, is_locked, problems, step_of
from .files import did_you_mean

RUN_STATE = "run_state.json"
RUN_COMPLETE = "run_complete.json"  # written last by a run that finished: {"steps": N}


def write_state(output_dir, **fields) -> None:
    """Update the run's state file with `fields` (a temporary file, then a rename: a reader never sees half of it)."""
    path = Path(output_dir) / RUN_STATE
    state = {**read_state(output_dir), **fields, "updated": time.time(), "pid": os.getpid(),
             "host": socket.gethostname()}
    tmp = path.with_name(f".{RUN_STATE}.{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, path)


def read_state(output_dir) -> dict:
    """The run's state file ({} when there is none or it cannot be read)."""
    try:
        state = json.loads((Path(output_dir) / RUN_STATE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def finished_steps(output_dir) -> int | None:
    """The step count of a run that finished in `output_dir`, or None."""
    marker = Path(output_dir) / RUN_COMPLETE
    return json.loads(marker.read_text())["steps"] if marker.exists() else None


def eta_seconds(step: int, max_steps: int, seconds: float, steps: int) -> float | None:
    """Seconds left at the pace of the last `steps` steps that took `seconds` (evaluations and saves included)."""
    return (max_steps - step) * seconds / steps if steps > 0 and max_steps >= step else None


def duration(seconds: float | None) -> str:
    """A human duration: 45 s, 12 min, 3.5 h, 2.1 days."""
    if seconds is None:
        return "unknown"
    for limit, unit, size in ((90, "s", 1), (90 * 60, "min", 60), (48 * 3600, "h", 3600)):
        if seconds < limit:
            return f"{seconds / size:.0f} {unit}" if unit != "h" else f"{seconds / size:.1f} h"
    return f"{seconds / 86400:.1f} days"


def status_text(output_dir) -> str:
    """What `hansard-hf status RUN` prints: live or not, and why it ended; step of steps; the last complete checkpoint
    (sizes checked: a resume checks every byte) and its age; the last validation bits per byte; the ETA."""
    out = Path(output_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: no such run folder (a run's output_dir, e.g. runs/hansard_tiny)"
                                f"{did_you_mean(out)}.")
    if not any((out / name).exists() for name in (RUN_STATE, "recipe.json", LOCK_FILE)) and not checkpoints(out):
        raise FileNotFoundError(f"{out} holds no run: no {RUN_STATE}, recipe.json or checkpoint-N (name a run's "
                                "output_dir, e.g. runs/hansard_tiny).")
    state, now = read_state(out), time.time()
    step, steps = state.get("step"), state.get("max_steps")
    at = f"step {step:,} of {steps:,}" if step is not None and steps else "no step logged yet"
    finished, live = finished_steps(out), is_locked(out)
    if finished is not None:
        line = f"finished: {finished:,} steps; the model is in the folder"
    elif live:
        line = f"live: {at}, last log {duration(now - state['updated'])} ago" if state else "live: starting"
        line += f" (pid {state['pid']} on {state['host']})" if state else ""
    elif state.get("state") in ("stopped", "diverged", "crashed"):
        line = f"{state['state']} at {at}: {state['reason']}"
    elif state.get("state") == "trained":
        line = f"training done at {at}; no {RUN_COMPLETE}: a recipe run's final evaluation and save did not finish"
    elif state:
        line = (f"dead at {at}: its process ended without a word (SIGKILL, out of memory, a lost node) "
                f"{duration(now - state['updated'])} ago; run it again to resume")
    else:
        line = f"not started (no {RUN_STATE}, no live run)"
    lines = [f"run         {out.resolve()}", f"state       {line}"]
    complete = [folder for folder in checkpoints(out) if not problems(folder, content=False)]
    if complete:
        age = duration(now - (complete[0] / COMPLETE_MARKER).stat().st_mtime)
        lines.append(f"checkpoint  {complete[0].name} (step {step_of(complete[0]):,}), written {age} ago; "
                     f"{len(complete)} complete")
    else:
        lines.append("checkpoint  none complete: a rerun starts from the beginning")
    if "eval_bpb" in state:
        lines.append(f"validation  {state['eval_bpb']:.4f} bits per byte at step {state['eval_step']:,}")
    if "tokens_seen" in state:
        lines.append(f"tokens      {state['tokens_seen']:,} of {state['tokens_total']:,}")
    if state.get("eta_s") is not None and finished is None and live:
        lines.append(f"eta         {duration(state['eta_s'])} (elapsed {duration(state.get('elapsed_s'))})")
    return "\n".join(lines)

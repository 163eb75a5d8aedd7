"""`hansard-hf train` of the tiny recipe as a subprocess: its command line, and waiting on the step it logged (the
end-to-end tests on the CPU, test_pipeline.py, and on a GPU, test_gpu.py)."""

import json
import subprocess
import sys
import time
from pathlib import Path

from hansard_hf.progress import read_state

ROOT = Path(__file__).resolve().parents[1]


def overrides(corpus, out, **extra) -> list[str]:
    values = dict(dataset=str(corpus), tokenizer_vocab_size=512, vocab_size=512, max_seq_len=64,
                  device_batch_size=4, total_batch_size=512, eval_every=2, save_every=2, eval_tokens=2048,
                  logging_steps=1, max_steps=4, output_dir=str(out), disable_tqdm=True)
    values.update(extra)
    return [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items()]


def command(env, out, *command_prefix, **extra) -> list[str]:
    """`hansard-hf train` (or `command_prefix`) of the tiny recipe into `out`, with overrides; `env` is
    (folder, corpus, environment)."""
    return [*(command_prefix or [sys.executable, "-m", "hansard_hf.cli", "train"]), str(ROOT / "recipes" / "tiny.json"),
            *overrides(env[1], out, **extra)]


def wait_until(process: subprocess.Popen, ready, what: str) -> None:
    deadline = time.time() + 300
    while not ready():
        assert process.poll() is None and time.time() < deadline, f"the run ended before {what}"
        time.sleep(0.02)


def logged_step(out) -> int:
    return read_state(out).get("step", -1) if read_state(out).get("state") == "running" else -1

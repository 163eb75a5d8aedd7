"""Evaluation of any causal LM with its tokenizer, one module per measure:

- `bpb`: validation loss and bits per byte (nanochat's formula), chunked so full logits never exist;
- `core_benchmark`: CORE (DCLM) in-context tasks, scored as nanochat scores them;
- `hansard_tasks`: the Hansard benchmark, built from held-out debates and scored like CORE;
- `samples`: greedy samples of fixed prompts;
- `evaluate_checkpoint`: `hansard-hf eval`, all of the above for a folder or Hub id;
- `metrics/`: bits per byte and centred accuracy as `evaluate` metric scripts.
"""

from .bpb import bits_per_byte, evaluate_bpb, token_nats
from .core_benchmark import Task, evaluate_tasks, load_bundle
from .hansard_tasks import build_hansard_tasks
from .samples import SAMPLES_FILE, sample

__all__ = ["SAMPLES_FILE", "Task", "bits_per_byte", "build_hansard_tasks", "evaluate_bpb", "evaluate_tasks",
           "load_bundle", "sample", "token_nats"]

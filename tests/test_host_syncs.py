"""No host syncs per micro-step: ops that need a tensor's value on the host (`.item()`, `bool(t)`, `float(t)`) or
whose output shape depends on data, counted per optimizer step while a real HansardTrainer trains.

Only logging steps may sync, after the step: 2 syncs, transformers' Trainer._maybe_log_save_evaluate reading
`tr_loss.item()` and `grad_norm.item()`. (Outside the steps, not asserted: 1 when the data loader's iterator is
created, 1 in `_finalize_training`.)
"""

import traceback
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import TrainerCallback

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf import HansardTrainer
from trainer_helpers import PackedRows, tiny_arguments

aten = torch.ops.aten
SEQ, VOCAB, STEPS, LOGGING_STEPS, ACCUMULATION = 32, 512, 5, 2, 3
# ops that copy a value to the host, or must read data to size their output
VALUE_TO_HOST = {aten._local_scalar_dense, aten.item, aten.equal}
DATA_SIZED = {aten.nonzero, aten.masked_select, aten._unique, aten._unique2, aten.unique_dim, aten.unique_consecutive}
MATMULS = {aten.mm, aten.bmm, aten.addmm, aten.baddbmm}


def is_host_sync(func, args, kwargs) -> bool:
    op = func.overloadpacket
    if op in VALUE_TO_HOST or op in DATA_SIZED:
        return True
    if op is aten.index:  # a boolean mask index is a nonzero
        return any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1])
    repeat_by_tensor = op is aten.repeat_interleave and func is not aten.repeat_interleave.self_int
    return repeat_by_tensor and kwargs.get("output_size") is None


def caller() -> str:
    """The innermost frame outside torch and this file, and the innermost hansard_hf frame that led there."""
    frames = [f for f in traceback.extract_stack() if "/torch/" not in f.filename and f.filename != __file__]
    ours = [f for f in frames if "/hansard_hf/" in f.filename]
    shown = frames[-1:] + [f for f in ours[-1:] if f is not frames[-1]]
    return " via ".join(f"{f.filename.split('/')[-1]}:{f.lineno} {f.line}" for f in shown)


class SyncCounter(TorchDispatchMode, TrainerCallback):
    """Counts host syncs, matmuls and backward ops per (optimizer step, phase); the callbacks set the phase:
    "micro k" (the k-th training_step: forward + backward), "update" (the rest from on_step_begin to on_step_end:
    gradient norm, optimizer step, scheduler, zero_grad) and "after" (logging, evaluation, saving, next batches)."""

    def __init__(self):
        super().__init__()
        self.phase = (0, "setup")
        self.syncs, self.matmuls, self.backward_ops = Counter(), Counter(), Counter()
        self.sources: dict[tuple, list[str]] = {}
        self.micro_steps: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if is_host_sync(func, args, kwargs):
            self.syncs[self.phase] += 1
            self.sources.setdefault(self.phase, []).append(f"{func} from {caller()}")
        self.matmuls[self.phase] += func.overloadpacket in MATMULS
        self.backward_ops[self.phase] += torch._C._current_autograd_node() is not None
        return func(*args, **kwargs)

    def wrap_training_step(self, trainer) -> None:
        training_step = trainer.training_step

        def counted(*args, **kwargs):
            outer = self.phase
            self.phase = (outer[0], f"micro {sum(step == outer[0] for step, _ in self.micro_steps)}")
            self.micro_steps.append(self.phase)
            try:
                return training_step(*args, **kwargs)
            finally:
                self.phase = outer

        trainer.training_step = counted

    def on_step_begin(self, args, state, control, **kwargs):
        self.phase = (state.global_step + 1, "update")

    def on_step_end(self, args, state, control, **kwargs):
        self.phase = (state.global_step, "after")

    def on_epoch_end(self, args, state, control, **kwargs):
        self.phase = (state.global_step, "end of training")

    def report(self, phase) -> str:
        return f"{self.syncs[phase]} host syncs in step {phase[0]} ({phase[1]}): {self.sources.get(phase)}"


def tiny_trainer(output_dir, **overrides) -> HansardTrainer:
    torch.manual_seed(0)
    model = HansardGPTForCausalLM(HansardGPTConfig(depth=2, vocab_size=VOCAB, max_position_embeddings=SEQ))
    args = tiny_arguments(output_dir, **{"max_seq_len": SEQ, "total_batch_size": 2 * ACCUMULATION * SEQ,
                                         "max_steps": STEPS, "logging_steps": LOGGING_STEPS, "warmup_ratio": 0.0,
                                         "warmdown_ratio": 0.2, "use_cpu": False, **overrides})
    return HansardTrainer(model=model, args=args, train_dataset=PackedRows(2 * ACCUMULATION * STEPS, SEQ, VOCAB))


@pytest.fixture(scope="module")
def counted_run(tmp_path_factory) -> tuple[HansardTrainer, SyncCounter]:
    """A 5-step CPU run, 3 micro-steps each, logging at steps 2 and 4, with every op counted."""
    trainer = tiny_trainer(tmp_path_factory.mktemp("run"), use_cpu=True)
    counter = SyncCounter()
    trainer.add_callback(counter)
    counter.wrap_training_step(trainer)
    with counter:
        trainer.train()
    return trainer, counter


def test_the_counter_sees_forward_backward_and_optimizer_step(counted_run):
    trainer, counter = counted_run
    assert trainer.args.gradient_accumulation_steps == ACCUMULATION
    assert len(counter.micro_steps) == STEPS * ACCUMULATION
    for phase in counter.micro_steps:
        assert counter.matmuls[phase] > 0 and counter.backward_ops[phase] > 0, phase
    for step in range(1, STEPS + 1):
        assert counter.matmuls[step, "update"] > 0  # Newton-Schulz


def test_micro_steps_do_not_sync(counted_run):
    _, counter = counted_run
    counts = [counter.syncs[phase] for phase in counter.micro_steps]
    assert counts == [0] * STEPS * ACCUMULATION, [counter.report(p) for p in counter.micro_steps if counter.syncs[p]]


def test_optimizer_step_scheduler_and_zero_grad_do_not_sync(counted_run):
    _, counter = counted_run
    counts = {step: counter.syncs[step, "update"] for step in range(1, STEPS + 1)}
    assert counts == {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}, [counter.report((s, "update")) for s in counts if counts[s]]


def test_only_logging_steps_sync_after_the_step(counted_run):
    trainer, counter = counted_run
    logged = {entry["step"] for entry in trainer.state.log_history if "loss" in entry}
    assert logged == {2, 4}
    counts = {step: counter.syncs[step, "after"] for step in range(1, STEPS + 1)}
    assert counts == {1: 0, 2: 2, 3: 0, 4: 2, 5: 0}, [counter.report((s, "after")) for s in counts if counts[s]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_no_synchronizing_cuda_call_from_step_begin_to_step_end(tmp_path):
    """From step 2 on (step 1 creates the optimizer state and compiles Newton-Schulz), the micro-steps, optimizer
    step, scheduler and zero_grad run under CUDA's sync debug mode "error": any synchronizing call raises."""

    class RaiseOnSync(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step >= 1:
                torch.cuda.set_sync_debug_mode("error")

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.set_sync_debug_mode("default")

    trainer = tiny_trainer(tmp_path)
    trainer.add_callback(RaiseOnSync())
    try:
        trainer.train()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.state.global_step == STEPS

"""HansardTrainer step time vs a plain PyTorch loop (same model, optimizer, data, accumulation), in one process.

    python bench/trainer_step.py [--depth 4] [--steps 30] [--threads 2]

Prints the median optimizer-step time of each (first 5 steps dropped) and the ratio Trainer / loop (target <= 1.10
on CPU). Rounds are interleaved so that machine noise hits both.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf import HansardTrainer, HansardTrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from trainer_helpers import PackedRows, plain_loop  # noqa: E402

WARMUP = 5


class StepTimes(TrainerCallback):
    def __init__(self):
        self.stamps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append(time.perf_counter())


def build(depth, seq, vocab):
    torch.manual_seed(0)
    return HansardGPTForCausalLM(HansardGPTConfig(depth=depth, aspect_ratio=64, head_dim=64, vocab_size=vocab,
                                                  max_position_embeddings=seq))


def trainer_steps(args, data, depth, vocab) -> list[float]:
    timer = StepTimes()
    trainer = HansardTrainer(model=build(depth, args.budget.max_seq_len, vocab), args=args, train_dataset=data,
                             callbacks=[timer])
    trainer.train()
    return [b - a for a, b in zip(timer.stamps, timer.stamps[1:])][WARMUP:]


def loop_steps(args, data, depth, vocab, steps) -> list[float]:
    stamps = []
    plain_loop(build(depth, args.budget.max_seq_len, vocab), data, args, steps, on_step=lambda: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])][WARMUP:]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = PackedRows(8 * args.steps, args.seq, args.vocab)
    out = tempfile.mkdtemp()
    targs = HansardTrainingArguments.from_settings(output_dir=out, max_seq_len=args.seq, device_batch_size=4,
                                     total_batch_size=8 * args.seq, max_steps=args.steps, eval_every=0, save_every=0,
                                     logging_steps=10, report_to="none", use_cpu=True, disable_tqdm=True)
    trainer, loop = [], []
    for _ in range(args.rounds):
        trainer += trainer_steps(targs, data, args.depth, args.vocab)
        loop += loop_steps(targs, data, args.depth, args.vocab, args.steps)
    t, l = statistics.median(trainer), statistics.median(loop)
    print(f"depth {args.depth}, width {64 * args.depth}, seq {args.seq}, 4 rows x 2 accumulation, {args.threads} threads")
    print(f"HansardTrainer {t * 1e3:8.1f} ms/step   plain loop {l * 1e3:8.1f} ms/step   ratio {t / l:.3f}")


if __name__ == "__main__":
    main()

"""Training throughput of a recipe: tokens/s, MFU, step time and peak memory, HansardTrainer vs a plain loop.

    python bench/throughput.py recipes/d24.json --steps 30 [--key=value ...]       # on a GPU (bf16 from the recipe)
    python bench/throughput.py recipes/tiny.json --steps 12 --use_cpu=true         # the same code path on a CPU
    accelerate launch --config_file accelerate_fsdp2.yaml --num_processes 1 bench/throughput.py recipes/d24.json  # FSDP2

Synthetic token rows of the recipe's max_seq_len (throughput does not depend on the text). The first `--warmup`
steps (compilation, allocator warm-up) are dropped; the median of the rest is reported. MFU uses nanochat's FLOPs
per token and the GPU's dense bf16 peak (H100 SXM 989 TFLOP/s). `--reference loop` also times a plain PyTorch loop
over the same model, optimizer, batch arithmetic, activation checkpointing and torch.compile setting and prints the
Trainer's share of its tokens/s (target >= 0.95).
"""

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback, set_seed

from hansard_hf import HansardGPTForCausalLM, HansardTrainer
from hansard_hf.recipe import Recipe
from hansard_hf.budget import peak_flops
from hansard_hf.memory import fit_to_memory, state_shards, training_bytes
from hansard_hf.layout import check_launch, describe_layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from trainer_helpers import plain_loop  # noqa: E402


class RandomRows(torch.utils.data.Dataset):
    def __init__(self, rows, seq, vocab):
        self.rows = torch.randint(0, vocab, (rows, seq + 1), generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return {"input_ids": self.rows[i, :-1], "shift_labels": self.rows[i, 1:]}


class Clock:
    """Stamps each step's end and prints that step's time, tokens/s and (on a GPU) peak memory as it goes, so that a
    run stopped by a timeout still leaves its figures."""

    def __init__(self, name: str, tokens_per_step: int, device: torch.device):
        self.name, self.tokens, self.device, self.stamps = name, tokens_per_step, device, []

    def tick(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stamps.append(time.perf_counter())
        if len(self.stamps) > 1:
            seconds = self.stamps[-1] - self.stamps[-2]
            line = f"{self.name} step {len(self.stamps)}: {seconds * 1e3:.1f} ms, {self.tokens / seconds:,.0f} tokens/s"
            if self.device.type == "cuda":
                line += f", peak {torch.cuda.max_memory_allocated(self.device) / 1e9:.1f} GB"
            print(line, flush=True)


class StepClock(TrainerCallback):
    """`clock` ticked at the end of each Trainer step."""

    def __init__(self, clock: Clock):
        self.clock = clock

    def on_step_end(self, args, state, control, **kwargs):
        self.clock.tick()


def bench_recipe(path, steps: int, overrides: list[str]) -> Recipe:
    """The recipe for `steps` timed steps: no evaluation, checkpoints, benchmarks, samples or tracking."""
    return Recipe.load(path, overrides + [f"--max_steps={steps}", "--eval_every=0", "--save_every=0",
                                          "--report_to=none", "--run=dummy", "--core_metric_every=0",
                                          "--sample_every=0", "--disable_tqdm=true",
                                          f"--output_dir={tempfile.mkdtemp()}"])


def median_step(stamps: list[float], warmup: int) -> float:
    """Median seconds between step ends, the first `warmup` steps (compilation, allocator warm-up) left out."""
    return statistics.median([b - a for a, b in zip(stamps, stamps[1:])][warmup:])


def report(name, seconds, tokens, flops_per_token, peak, gpus):
    line = f"{name:16s} step {seconds * 1e3:9.1f} ms   {tokens / seconds:12,.0f} tokens/s"
    if peak:
        line += f"   MFU {flops_per_token * tokens / seconds / (peak * gpus):6.1%}"
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reference", choices=["none", "loop"], default="none")
    known, overrides = parser.parse_known_args()
    recipe = bench_recipe(known.recipe, known.steps, overrides)
    args = recipe.training_arguments()
    check_launch()  # an FSDP2 launch that would run as DDP stops here, as hansard-hf train does
    set_seed(0)
    model = HansardGPTForCausalLM(recipe.model_config())
    config = model.config
    args.resolve(config)
    rows = known.steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    data = RandomRows(rows, args.budget.max_seq_len, config.vocab_size)
    fit_to_memory(model, args, data)  # as hansard-hf train: the activation checkpointing that fits (DDP or FSDP2)
    device = args.device
    gpus = args.world_size
    peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    flops_per_token = config.flops_per_token(args.budget.max_seq_len)
    print(f"{known.recipe}: d{config.depth}, {model.num_parameters():,} params, {args.per_device_train_batch_size} rows x "
          f"{args.budget.max_seq_len} x {args.gradient_accumulation_steps} accumulation x {gpus} GPU(s) = "
          f"{args.budget.total_batch_size:,} tokens/step, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(describe_layout(args))

    every = 0  # the activation checkpointing fit_to_memory chose (on a GPU, when the micro-batch needs it)
    if args.activation_checkpointing:
        every = (args.activation_checkpointing_kwargs or {}).get("every_n_layers", 1)
    print(f"activation checkpointing: one layer in {every}" if every else "activation checkpointing: none")
    estimate = training_bytes(config, args.per_device_train_batch_size, args.budget.max_seq_len, every,
                              state_shards(args))
    print(f"peak memory estimate (hansard-hf plan's): {estimate / 1e9:.1f} GB")

    clock = Clock("HansardTrainer", args.budget.total_batch_size, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = HansardTrainer(model=model, args=args, train_dataset=data, callbacks=[StepClock(clock)])
    trainer.train()
    trainer_seconds = median_step(clock.stamps, known.warmup)
    print(report("HansardTrainer", trainer_seconds, args.budget.total_batch_size, flops_per_token, peak, gpus))
    if device.type == "cuda":
        measured = torch.cuda.max_memory_allocated(device)
        print(f"peak memory {measured / 1e9:.1f} GB, {measured / estimate:.2f} x the estimate")
        del trainer, model
        gc.collect()  # the trainer's callbacks refer back to it
        torch.cuda.empty_cache()
    if known.reference == "loop":
        set_seed(0)
        reference = HansardGPTForCausalLM(recipe.model_config()).to(device)
        if every:
            reference.activation_checkpointing_enable(every_n_layers=every)
        if args.torch_compile:
            reference = torch.compile(reference, dynamic=False)
        loop_clock = Clock("plain loop", args.budget.total_batch_size, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(args.bf16)):
            plain_loop(reference, _OnDevice(data, device), args, known.steps, on_step=loop_clock.tick)
        loop_seconds = median_step(loop_clock.stamps, known.warmup)
        print(report("plain loop", loop_seconds, args.budget.total_batch_size, flops_per_token, peak, gpus))
        print(f"Trainer tokens/s as a share of the plain loop's: {loop_seconds / trainer_seconds:.3f}")


class _OnDevice(torch.utils.data.Dataset):
    """`data` with every tensor moved to `device` (the plain loop has no accelerate to do it)."""

    def __init__(self, data, device):
        self.data, self.device = data, device

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return {k: v.to(self.device) for k, v in self.data[i].items()}


if __name__ == "__main__":
    main()

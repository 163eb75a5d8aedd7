"""Training throughput of HansardTrainer vs nanochat's own base_train loop, same model, batch and data, one process.

    python bench/vs_nanochat.py --nanochat .nanochat recipes/d24.json --steps 30 --device_batch_size=32   # one GPU
    python bench/vs_nanochat.py --nanochat .nanochat recipes/tiny.json --steps 8 --warmup 2 --use_cpu=true

nanochat is karpathy/nanochat at commit 10231df (2025-12-31), extracted into the ignored folder .nanochat (never
committed, never copied into this repo) and imported from there:

    mkdir -p .nanochat && git -C /path/to/nanochat archive 10231df | tar -x -C .nanochat

Its side is scripts/base_train.py's inner loop on its GPT (meta-device init, setup_optimizers: Muon + AdamW, LR and
Muon momentum schedules, loss / grad_accum per micro-step, compiled on CUDA, bf16 autocast). Ours is HansardTrainer
on the same depth, width, heads, vocab, sequence, micro-batch, accumulation, learning rates and synthetic rows,
starting from nanochat's initial weights; both run Newton-Schulz in bf16 under torch.compile (nanochat's only mode)
and nanochat clips gradients at its own default, 1.0 (base_train's grad_clip at 10231df), while ours clips at the
recipe's max_grad_norm (0 by default: see HansardTrainingArguments.max_grad_norm; --max_grad_norm=1.0 matches). bf16 autocast and `--compile auto` apply only on CUDA. Step time is
the median gap between step ends after `--warmup` steps; the losses of the first and last steps should agree.
"""

import argparse
import dataclasses
import itertools
import math
import sys
import time
from pathlib import Path

import torch
from transformers import set_seed

from hansard_hf import HansardGPTForCausalLM, HansardTrainer
from hansard_hf.optimization import lr_multiplier, muon_momentum

NANOCHAT_GRAD_CLIP = 1.0  # scripts/base_train.py at 10231df: grad_clip = 1.0
from hansard_hf.budget import peak_flops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import Clock, RandomRows, bench_recipe, median_step, report  # noqa: E402

# nanochat parameter names -> ours
RENAMES = {"transformer.wte": "model.embed_tokens", "transformer.h": "model.layers", "attn.c_q": "self_attn.q_proj",
           "attn.c_k": "self_attn.k_proj", "attn.c_v": "self_attn.v_proj", "attn.c_proj": "self_attn.o_proj",
           "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


class RecordingTrainer(HansardTrainer):
    """HansardTrainer that keeps every micro-batch's loss as the Trainer reports it (they sum to the step's loss)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.micro_losses = []

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        self.micro_losses.append(loss)
        return loss


def nanochat_model(config, device):
    """base_train's model set-up: GPTConfig from our config, meta-device init, to_empty, init_weights."""
    from nanochat.gpt import GPT, GPTConfig

    with torch.device("meta"):
        model = GPT(GPTConfig(sequence_len=config.max_position_embeddings, vocab_size=config.vocab_size,
                              n_layer=config.num_hidden_layers, n_head=config.num_attention_heads,
                              n_kv_head=config.num_key_value_heads, n_embd=config.hidden_size))
    model.to_empty(device=device)
    model.init_weights()
    return model


@torch.no_grad()
def copy_weights(nanochat, ours):
    """Load nanochat's weights into our model (its vocabulary rows may be padded to a multiple of 64)."""
    mine = ours.state_dict()
    for name, weight in nanochat.state_dict().items():
        for old, new in RENAMES.items():
            name = name.replace(old, new)
        mine[name].copy_(weight[: len(mine[name])])


def nanochat_loop(model, args, data, steps, bf16, compile):
    """base_train.py's training step, `steps` times; returns the time stamps after each step and the losses."""
    device, cuda = args.device, args.device.type == "cuda"
    orig_model = model
    if compile:
        model = torch.compile(model, dynamic=False)
    optimizers = model.setup_optimizers(unembedding_lr=args.adamw.unembedding_lr, embedding_lr=args.adamw.embedding_lr,
                                        matrix_lr=args.muon.matrix_lr)
    muon_optimizer = optimizers[1]
    batch, grad_accum_steps = args.per_device_train_batch_size, args.gradient_accumulation_steps
    train_loader = ((rows[:, :-1].contiguous().to(device, non_blocking=cuda),
                     rows[:, 1:].contiguous().to(device, non_blocking=cuda))
                    for rows in itertools.cycle(data.rows.split(batch)))
    synchronize = torch.cuda.synchronize if cuda else lambda: None
    stamps, losses = [], []
    x, y = next(train_loader)
    for step in range(steps):
        for _ in range(grad_accum_steps):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(x, y)
            loss = loss / grad_accum_steps
            loss.backward()
            losses.append(loss.detach())  # base_train's train_loss, kept for the end instead of logged per step
            x, y = next(train_loader)
        torch.nn.utils.clip_grad_norm_(orig_model.parameters(), NANOCHAT_GRAD_CLIP).item()  # its default, not ours
        lrm = lr_multiplier(step, steps, args.schedule.warmup_ratio, args.schedule.warmdown_ratio, args.schedule.final_lr_frac)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lrm
        for group in muon_optimizer.param_groups:
            group["momentum"] = muon_momentum(step)
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        synchronize()
        stamps.append(time.perf_counter())
    return stamps, losses


def step_losses(micro_losses, accumulation):
    """Each step's loss: the sum of its micro-batches' (already divided by the accumulation) losses."""
    return [sum(micro_losses[i:i + accumulation]).item() for i in range(0, len(micro_losses), accumulation)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("--nanochat", required=True, help="folder of the nanochat checkout (commit 10231df)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", choices=["auto", "true", "false"], default="auto",
                        help="torch.compile both models (auto: on CUDA, as base_train)")
    known, overrides = parser.parse_known_args()
    sys.path.insert(0, str(Path(known.nanochat).resolve()))
    from nanochat.common import compute_init

    recipe = bench_recipe(known.recipe, known.steps, ["--muon_ns_dtype=bfloat16", "--muon_compile=true"] + overrides)
    cuda = torch.cuda.is_available() and not recipe.settings["use_cpu"]
    compile = cuda if known.compile == "auto" else known.compile == "true"
    recipe = dataclasses.replace(recipe, values={**recipe.values, "bf16": recipe.settings["bf16"] and cuda,
                                                 "torch_compile": compile})
    args = recipe.training_arguments()
    set_seed(0)
    ours = HansardGPTForCausalLM(recipe.model_config())
    config = ours.config
    args.resolve(ours.config)
    device = args.device
    compute_init(device.type)  # base_train's: seed, and TF32 matmuls on CUDA (for both sides)
    rows = known.steps * args.per_device_train_batch_size * args.gradient_accumulation_steps
    data = RandomRows(rows, args.budget.max_seq_len, config.vocab_size)
    peak = peak_flops(torch.cuda.get_device_name(device)) if cuda else None
    flops_per_token = config.flops_per_token(args.budget.max_seq_len)
    print(f"{known.recipe}: d{config.depth}, width {config.hidden_size}, {config.num_attention_heads} heads, vocab "
          f"{config.vocab_size}, {ours.num_parameters():,} params, {args.per_device_train_batch_size} rows x "
          f"{args.budget.max_seq_len} x {args.gradient_accumulation_steps} accumulation = {args.budget.total_batch_size:,} "
          f"tokens/step, device {device}" + (f" ({torch.cuda.get_device_name(device)})" if cuda else "")
          + f", bf16 {args.bf16}, compile {compile}, {torch.get_num_threads()} threads")

    nanochat = nanochat_model(config, device)
    copy_weights(nanochat, ours)
    stamps, micro_losses = nanochat_loop(nanochat, args, data, known.steps, args.bf16, compile)
    nanochat_losses = step_losses(micro_losses, args.gradient_accumulation_steps)
    nanochat_seconds = median_step(stamps, known.warmup)
    print(report("nanochat", nanochat_seconds, args.budget.total_batch_size, flops_per_token, peak, 1))
    if cuda:
        print(f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
        del nanochat
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)

    clock = Clock()
    trainer = RecordingTrainer(model=ours, args=args, train_dataset=data, callbacks=[clock])
    trainer.train()
    our_losses = step_losses(trainer.micro_losses, args.gradient_accumulation_steps)
    our_seconds = median_step(clock.stamps, known.warmup)
    print(report("HansardTrainer", our_seconds, args.budget.total_batch_size, flops_per_token, peak, 1))
    if cuda:
        print(f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")

    print(f"HansardTrainer tokens/s as a share of nanochat's: {nanochat_seconds / our_seconds:.3f} (target >= 1.0)")
    print(f"loss at step 1 / {known.steps}: nanochat {nanochat_losses[0]:.4f} / {nanochat_losses[-1]:.4f}, "
          f"HansardTrainer {our_losses[0]:.4f} / {our_losses[-1]:.4f} (ln vocab = {math.log(config.vocab_size):.4f})")


if __name__ == "__main__":
    main()

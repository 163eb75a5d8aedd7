"""Small packed-row datasets, the arguments of a tiny run, the losses a run logged, and a plain PyTorch training loop
(the reference the Trainer is checked against)."""

import json
from pathlib import Path

import torch

from hansard_hf import HansardTrainingArguments
from hansard_hf.optimization import muon_adamw, nanochat_schedule

SEQ = 16  # tokens per row of the tiny runs

# A tiny run on the CPU: 2 rows x 16 tokens per micro-step, 2 micro-steps per step, 6 steps, a log every step,
# nothing reported, no evaluation or checkpoints unless asked.
TINY_RUN = dict(max_seq_len=SEQ, device_batch_size=2, total_batch_size=4 * SEQ, max_steps=6, warmup_ratio=0.2,
                warmdown_ratio=0.4, eval_every=0, save_every=0, logging_steps=1, report_to="none", use_cpu=True,
                seed=0, disable_tqdm=True)


def tiny_arguments(output_dir, **overrides) -> HansardTrainingArguments:
    """The arguments of a tiny run into `output_dir` (TINY_RUN), with `overrides`."""
    return HansardTrainingArguments.from_settings(**{**TINY_RUN, "output_dir": str(output_dir), **overrides})


def losses(run, after: int = 0) -> dict[int, float]:
    """{step: loss} a run logged after step `after`: a Trainer's log history, or a run folder's trainer_state.json."""
    history = (json.loads((Path(run) / "trainer_state.json").read_text())["log_history"]
               if isinstance(run, (str, Path)) else run.state.log_history)
    return {e["step"]: e["loss"] for e in history if "loss" in e and e["step"] > after}


class PackedRows(torch.utils.data.Dataset):
    """Random token rows of max_seq_len + 1 tokens, served as nanochat does: inputs and next-token targets."""

    def __init__(self, rows: int, max_seq_len: int, vocab_size: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        # a learnable stream: each token is the previous one plus 1 (mod V) half of the time
        tokens = torch.randint(0, vocab_size, (rows, max_seq_len + 1), generator=generator)
        follow = torch.rand(rows, max_seq_len + 1, generator=generator) < 0.5
        for t in range(1, max_seq_len + 1):
            tokens[:, t] = torch.where(follow[:, t], (tokens[:, t - 1] + 1) % vocab_size, tokens[:, t])
        self.rows = tokens

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return {"input_ids": self.rows[index, :-1], "shift_labels": self.rows[index, 1:]}


def plain_loop(model, dataset, args, steps: int, on_step=None, grad_clip: float = 0.0) -> list[float]:
    """nanochat's loop: per step, `accumulation` micro-batches of loss / accumulation, then (10231df's base_train)
    the gradients clipped to norm `grad_clip` when > 0, one optimizer step.

    `on_step()` is called after each optimizer step (the benchmark's clock)."""
    optimizer = muon_adamw(model, args)
    schedule = nanochat_schedule(optimizer, steps, args)
    batch, accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
    loader = iter(torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False, drop_last=True))
    model.train()
    losses = []
    for _ in range(steps):
        total = 0.0
        for _ in range(accumulation):
            loss = model(**next(loader)).loss / accumulation
            loss.backward()
            total = total + loss.detach()  # on the device: no host sync per micro-step
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        schedule.step()
        model.zero_grad(set_to_none=True)
        losses.append(total.item())  # one per step, as nanochat's per-step log
        if on_step is not None:
            on_step()
    return losses

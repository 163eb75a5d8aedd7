"""Small packed-row datasets and a plain PyTorch training loop, the reference the Trainer is checked against."""

import torch

from hansard_hf.optimization import NanochatSchedule, Schedule, muon_adamw


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
    schedule = NanochatSchedule(optimizer, steps, Schedule.of(args))
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

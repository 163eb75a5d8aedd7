"""Greedy samples of fixed prompts: logged during training, written to a run's samples file, shown by eval."""

import torch

from ..distributed import sharded

SAMPLES_FILE = "samples.json"  # the latest samples of a run, in its output folder
SAMPLE_PROMPTS = [
    "Mr. Speaker, I beg to move that the Bill be now read a Second time.",
    "The Prime Minister: I am grateful to my right hon. Friend for",
    "Order. Order. The House will",
    "The Chancellor of the Exchequer:",
    "My hon. Friend the Member for",
    "Question put, That the amendment be made.",
    "The capital of France is",
]


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str] = SAMPLE_PROMPTS, max_new_tokens: int = 16) -> dict[str, str]:
    """Greedy continuations of fixed prompts (BOS first), prompt -> continuation text. A model FSDP2 shards is
    sampled by every rank together (`synced_gpus`: each runs the same forwards until all are done)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    samples = {}
    for prompt in prompts:
        ids = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
        input_ids = torch.tensor([ids], device=device)
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.bos_token_id,
                             synced_gpus=sharded(model))
        samples[prompt] = tokenizer.decode(out[0, len(ids):], skip_special_tokens=False)
    model.train(was_training)
    return samples

"""Bits per byte (nanochat's formula) and validation loss for any causal LM, without materialising full logits."""

import math

import torch
import torch.nn.functional as F

from ..distributed import gathered, reduce_across_processes
from ..modeling_hansard_gpt import chunked_softcap_cross_entropy


def next_token_targets(batch: dict) -> torch.Tensor:
    """The next-token targets of a batch: `shift_labels` as given, or `labels` shifted left (-100 = ignore)."""
    if "shift_labels" in batch:
        return batch["shift_labels"]
    return F.pad(batch["labels"], (0, 1), value=-100)[..., 1:]


@torch.no_grad()
def token_nats(model, input_ids: torch.Tensor, targets: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Per-token cross-entropy in nats (0 where the target is -100), computed `chunk_size` tokens at a time from
    the backbone's hidden states and the output embedding, with the config's final logit softcap if any (the
    chunked loss HansardGPT trains with). Under FSDP2 the model's own and the output embedding's weights are
    gathered for it (it calls neither's forward)."""
    output_embeddings = model.get_output_embeddings()
    with gathered(model, output_embeddings):
        hidden = model.base_model(input_ids=input_ids, use_cache=False).last_hidden_state
        return chunked_softcap_cross_entropy(hidden, output_embeddings.weight, None,
                                             getattr(model.config, "final_logit_softcapping", None), chunk_size,
                                             shift_labels=targets, per_token=True)


def bits_per_byte(nats: float, nbytes: float) -> float:
    """nanochat's bits per byte: the summed nats of the tokens that have bytes, over their summed bytes, over ln 2."""
    return nats / (math.log(2) * nbytes) if nbytes else float("nan")


@torch.no_grad()
def evaluate_bpb(model, batches, token_bytes: torch.Tensor | None = None) -> dict[str, float]:
    """Mean next-token loss in nats, the number of target tokens it is over and, given `token_bytes`, nanochat's bits
    per byte.

    bpb = summed nats over summed target bytes / ln 2, special tokens (0 bytes) excluded from both sums.
    `batches` yields dicts with `input_ids` and `shift_labels` (or `labels`); `token_bytes[id]` is the byte length
    of token `id`. Under torch.distributed the sums are reduced across ranks.
    """
    device = next(model.parameters()).device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # nats on byte tokens, bytes, all nats, all targets
    for batch in batches:
        targets = next_token_targets(batch).to(device)
        nats = token_nats(model, batch["input_ids"].to(device), targets).double()
        valid = targets != -100
        nbytes = token_bytes.to(device)[targets.clamp(min=0)] * valid if token_bytes is not None else valid
        sums += torch.stack([(nats * (nbytes > 0)).sum(), nbytes.sum(), nats.sum(), valid.sum()])
    reduce_across_processes(sums)
    byte_nats, nbytes, nats, count = sums.tolist()
    if count == 0 or nbytes == 0:
        raise ValueError("evaluate_bpb: the evaluation batches hold no targets (empty split?).")
    metrics = {"loss": nats / count, "tokens": int(count)}
    if token_bytes is not None:
        metrics["bpb"] = bits_per_byte(byte_nats, nbytes)
    return metrics

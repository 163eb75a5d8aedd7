"""Run by test_fsdp.py under torchrun (gloo, CPU): MuonAdamW on a model sharded by FSDP2 (`fully_shard`, as
accelerate applies it on GPUs) against the same training in one plain process, with gradient accumulation, a
sharded checkpoint and its resume, and the full-weight save. Each rank writes what it saw to OUT/rank<r>.json."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict, set_state_dict
from torch.distributed.tensor import DTensor, Shard

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.configuration_hansard_gpt import NANOCHAT_2026 as ARCHITECTURE_2026
from hansard_hf.optimization import MuonAdamW, NanochatSchedule, local, muon_options, param_groups
from hansard_hf.settings import Muon, Schedule
from hansard_hf.presets import NANOCHAT_2026_TRAINING
from hansard_hf.layout import shard_model

ROWS, SEQ, ACCUMULATION, STEPS, SAVE_AT = 8, 16, 2, 4, 2  # 8 rows per micro-step over all ranks, 2 micro-steps


def config(options: tuple[str, ...] = ()) -> HansardGPTConfig:
    # width 30 and one KV head: k/v are 10 x 30, so 4 ranks hold 3, 3, 3 and 1 rows (uneven shards). "2026": with
    # nanochat's 2026 architecture too (a 1 x 12 value gate and 1- and 2-element scalars: shards of 0 or 1 rows)
    architecture = dict(ARCHITECTURE_2026, sliding_window=5) if "2026" in options else {}
    return HansardGPTConfig(depth=2, aspect_ratio=15, head_dim=10, num_key_value_heads=1, vocab_size=97,
                            max_position_embeddings=SEQ, **architecture)


def batches(step: int) -> list[torch.Tensor]:
    """The micro-batches of optimizer step `step`, the same for every process."""
    generator = torch.Generator().manual_seed(step)
    return [torch.randint(0, 97, (ROWS, SEQ), generator=generator) for _ in range(ACCUMULATION)]


NANOCHAT_2026 = muon_options(Muon.of(NANOCHAT_2026_TRAINING))  # MuonAdamW's options, as the preset sets them


def build(sharded: bool, options: tuple[str, ...] = ()):
    """The model, optimizer and schedule; options: "checkpointing", "compile", "2026" (Muon options, decay 0.2)."""
    torch.manual_seed(0)
    model = HansardGPTForCausalLM(config(options))
    if "checkpointing" in options:  # before sharding, as the run set-up does it
        model.activation_checkpointing_enable()
    if sharded:
        shard_model(model)
    if "compile" in options:  # after sharding, as accelerate does with torch_compile=true
        model.compile()
    groups = param_groups(model, adamw_groups="nanochat-2026" if "2026" in options else "nanochat-2025")
    if "2026" in options:
        groups[0].update(weight_decay=0.2, **NANOCHAT_2026)
    optimizer = MuonAdamW(groups, ns_dtype="float32")
    schedule = NanochatSchedule(optimizer, STEPS, Schedule(warmdown_ratio=0.5, momentum_warmup_steps=2))
    return model, optimizer, schedule


def train(model, optimizer, schedule, steps, rank=0, world=1, sharded=False, split=1) -> list[float]:
    """Optimizer steps over `steps`; each process takes rows rank::world of every micro-batch (one process with
    `split`: rows r::split for each r in turn, summing as the ranks' gradients are summed). Returns the losses."""
    losses = []
    for step in steps:
        total = torch.zeros(())
        for micro, rows in enumerate(batches(step)):
            if sharded:  # as accelerate's accumulation does: reduce-scatter the gradients once, at the last micro-step
                model.set_requires_gradient_sync(micro == ACCUMULATION - 1)
            for part in range(split):
                mine = rows[rank::world][part::split]
                loss = model(input_ids=mine, labels=mine).loss / (ACCUMULATION * split)
                loss.backward()
                total += loss.detach()
        if sharded:
            dist.all_reduce(total)
            total /= world
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total.item())
    return losses


def full_weights(model) -> dict[str, torch.Tensor]:
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def state_bytes(optimizer) -> int:
    """Bytes of optimizer state this process holds (its shards under FSDP2)."""
    return sum(local(t).numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
               if torch.is_tensor(t) and t.ndim > 0)


def main(out: Path, options: tuple[str, ...]) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, optimizer, schedule = build(sharded=True, options=options)
    params = dict(model.named_parameters())
    losses = train(model, optimizer, schedule, range(SAVE_AT), rank, world, sharded=True)
    model_state, optimizer_state = get_state_dict(model, optimizer)  # sharded: each rank writes its own shards
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=out / "checkpoint")
    losses += train(model, optimizer, schedule, range(SAVE_AT, STEPS), rank, world, sharded=True)
    weights = full_weights(model)  # on rank 0 only

    resumed, resumed_optimizer, resumed_schedule = build(sharded=True, options=options)
    model_state, optimizer_state = get_state_dict(resumed, resumed_optimizer)
    loaded = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(loaded, checkpoint_id=out / "checkpoint")
    set_state_dict(resumed, resumed_optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optimizer"])
    for _ in range(SAVE_AT):
        resumed_schedule.step()  # the schedule's position (the Trainer keeps it in scheduler.pt)
    resumed_losses = train(resumed, resumed_optimizer, resumed_schedule, range(SAVE_AT, STEPS), rank, world, True)
    resumed_weights = full_weights(resumed)

    if rank == 0:
        final = HansardGPTForCausalLM(config(options))  # the full weights, saved as from_pretrained and the export read them
        final.load_state_dict(weights)
        final.save_pretrained(out / "final")
        torch.save(resumed_weights, out / "resumed.pt")
    report = dict(
        world=world, checkpointed=[layer.gradient_checkpointing for layer in model.model.layers],
        compiled=getattr(model, "_compiled_call_impl", None) is not None, losses=losses, resumed_losses=resumed_losses, orthogonalized=optimizer.orthogonalized,
        sharded=all(isinstance(p, DTensor) and p.placements == (Shard(0),) for p in params.values()),
        local_rows={name: p.to_local().shape[0] for name, p in params.items()}, state_bytes=state_bytes(optimizer),
        momentum_sharded=all(isinstance(s["momentum_buffer"], DTensor) for s in optimizer.state.values()
                             if "momentum_buffer" in s),
        second_moments=sorted({str(s["second_moment"].placements) for s in optimizer.state.values()
                               if "second_moment" in s}),
    )
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), tuple(sys.argv[2:]))

"""DDP (today's multi-GPU path) vs FSDP2 (MuonAdamW on DTensor shards), side by side in one torchrun job over gloo
on CPU processes: per-rank optimizer-state bytes, parameter + gradient + optimizer-state bytes held per rank, bytes
each rank sends per optimizer step, and step time.

    python -m torch.distributed.run --nproc_per_node 2 bench/sharding.py [--depth 6] [--accumulation 2]

Layouts: DDP (a whole model, optimizer state and gradients per rank; Muon's matrices split across ranks), FSDP2
(`fully_shard` per layer and root, MuonAdamW on the DTensor shards) and FSDP2 with reshard_after_forward=false
(ZeRO-2-like: the weights are gathered once per optimizer step, kept through the micro-steps' forwards and
backwards, and resharded after the last backward).

Bytes sent are counted at every collective as it is called, by wrapping torch.distributed (DDP's gradient all-reduce
goes through it by way of the stock `allreduce_hook`; FSDP2 and the optimizer call it themselves), each
priced at what a rank sends in the standard algorithm: all-reduce 2(N-1)/N of the buffer, all-gather (N-1)/N of
the output, reduce-scatter and all-to-all (N-1)/N of the input. Parameter + gradient + state bytes are what each
rank keeps between steps; FSDP2 also holds up to two units unsharded during forward and backward (printed as
computed, not measured). Step times on CPU processes say nothing about GPUs.
"""

import argparse
import inspect
import statistics
import time

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.optimization import MuonAdamW, local, param_groups
from hansard_hf.layout import shard_model

SENT = {"bytes": 0.0}
PRICE = {"all_reduce": 2.0, "all_gather": 1.0, "all_gather_single": 1.0, "reduce_scatter_single": 1.0,
         "all_to_all_single": 1.0}  # x (N-1)/N of the payload
PAYLOAD = {"all_reduce": "tensor", "all_gather": "tensor_list", "all_gather_single": "output_tensor",
           "reduce_scatter_single": "input", "all_to_all_single": "input"}  # the argument whose bytes are priced


def count(name: str, payload: str):
    """Wrap torch.distributed.<name> so that every call adds what this rank sends to SENT."""
    original = getattr(dist, name)
    signature = inspect.signature(original)

    def counted(*args, **kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        world = dist.get_world_size(bound.get("group"))
        tensors = bound[payload] if isinstance(bound[payload], list) else [bound[payload]]
        SENT["bytes"] += PRICE[name] * (world - 1) / world * sum(nbytes(t) for t in tensors)
        return original(*args, **kwargs)

    setattr(dist, name, counted)


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def local_bytes(tensors) -> int:
    return sum(nbytes(local(t)) for t in tensors if torch.is_tensor(t))


LAYOUTS = ("DDP", "FSDP2", "FSDP2 no reshard")  # the last: reshard_after_forward=false, no all-gather in backward


def measure(layout: str, config, rows: int, seq: int, steps: int, accumulation: int, ns_dtype: str) -> dict:
    torch.manual_seed(0)
    model = HansardGPTForCausalLM(config)
    if layout.startswith("FSDP2"):
        shard_model(model, reshard_after_forward=layout == "FSDP2")
        wrapped = model
    else:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
        wrapped.register_comm_hook(None, allreduce_hook)  # DDP's own all-reduce, called through torch.distributed
    optimizer = MuonAdamW(param_groups(model), ns_dtype=ns_dtype)
    generator = torch.Generator().manual_seed(dist.get_rank())
    times, sent = [], []
    for _ in range(steps):
        SENT["bytes"], start = 0.0, time.perf_counter()
        for micro in range(accumulation):
            last = micro == accumulation - 1
            ids = torch.randint(0, config.vocab_size, (rows, seq), generator=generator)
            if layout.startswith("FSDP2"):
                model.set_requires_gradient_sync(last)
                if layout == "FSDP2 no reshard":  # weights stay gathered until the step's last backward
                    model.set_reshard_after_backward(last)
                model(input_ids=ids, labels=ids).loss.backward()
            elif last:
                wrapped(input_ids=ids, labels=ids).loss.backward()
            else:
                with wrapped.no_sync():
                    wrapped(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        held = local_bytes(model.parameters()) + local_bytes(p.grad for p in model.parameters())
        state = local_bytes(t for s in optimizer.state.values() for t in s.values())
        optimizer.zero_grad(set_to_none=True)
        dist.barrier()
        times.append(time.perf_counter() - start)
        sent.append(SENT["bytes"])
    return dict(state=state, held=held + state, sent=statistics.median(sent[1:]),
                step=statistics.median(times[1:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--rows", type=int, default=2, help="rows per rank per micro-step")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--accumulation", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--ns-dtype", default="float32", help="Newton-Schulz dtype (and of Muon's collectives); "
                        "bfloat16 is what a GPU uses")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    for name, payload in PAYLOAD.items():
        count(name, payload)
    config = HansardGPTConfig(depth=args.depth, vocab_size=args.vocab, max_position_embeddings=args.seq)
    results = {layout: measure(layout, config, args.rows, args.seq, args.steps, args.accumulation, args.ns_dtype)
               for layout in LAYOUTS}
    units = 2 * 2 * max((config.num_parameters() - 2 * config.vocab_size * config.hidden_size) // args.depth,
                        2 * config.vocab_size * config.hidden_size)  # two units' bf16 weights, computed
    world = dist.get_world_size()
    gathered = [None] * world
    dist.all_gather_object(gathered, results)
    if dist.get_rank() == 0:
        worst = {layout: {key: max(g[layout][key] for g in gathered) for key in results[layout]} for layout in LAYOUTS}
        print(f"d{args.depth} ({config.num_parameters():,} parameters), {world} CPU processes over gloo, "
              f"{args.rows} rows x {args.seq} tokens x {args.accumulation} accumulation per rank and step, "
              f"Newton-Schulz in {args.ns_dtype}; the worst rank of each:")
        print(f"{'layout':<18}{'state/rank MB':>14}{'params+grads+state MB':>23}{'sent/step MB':>14}{'step s':>8}"
              f"{'state':>7}{'sent':>7}{'time':>7}  (ratios to DDP)")
        ddp = worst["DDP"]
        for layout, r in worst.items():
            print(f"{layout:<18}{r['state'] / 1e6:>14.2f}{r['held'] / 1e6:>23.2f}{r['sent'] / 1e6:>14.2f}"
                  f"{r['step']:>8.3f}{r['state'] / ddp['state']:>7.3f}{r['sent'] / ddp['sent']:>7.3f}"
                  f"{r['step'] / ddp['step']:>7.2f}")
        print(f"FSDP2 also holds up to {units / 1e6:.1f} MB of unsharded bf16 units in flight (computed, not measured); "
              "without resharding, all its weights between forward and backward.")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

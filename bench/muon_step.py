"""Our Muon step vs torch.optim.Muon on the matrices of one HansardGPT model, side by side in one process.

    python bench/muon_step.py [--depth 4] [--aspect-ratio 64] [--threads 2]

Prints the median step time of each and the ratio ours / torch (target <= 1.0). Both orthogonalise in bf16 (torch's
only choice); ours in fp32 (its CPU default) is printed too.
"""

import argparse

import torch
from torch.utils.benchmark import Timer

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.optimization import MuonAdamW, param_groups


def block_matrices(depth: int, aspect_ratio: int) -> list[torch.nn.Parameter]:
    with torch.device("meta"):
        model = HansardGPTForCausalLM(HansardGPTConfig(depth=depth, aspect_ratio=aspect_ratio, vocab_size=256))
    shapes = [p.shape for p in param_groups(model)[0]["params"]]
    generator = torch.Generator().manual_seed(0)
    matrices = [torch.nn.Parameter(torch.randn(s, generator=generator) * 0.02) for s in shapes]
    for m in matrices:
        m.grad = torch.randn(m.shape, generator=generator)
    return matrices


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--aspect-ratio", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-run-time", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    contenders = {}
    for name, make in {
        "torch.optim.Muon (bf16)": lambda ps: torch.optim.Muon(ps, lr=0.02, weight_decay=0.0, momentum=0.95),
        "ours (bf16)": lambda ps: MuonAdamW([dict(params=ps, lr=0.02, use_muon=True)], ns_dtype="bfloat16"),
        "ours (fp32)": lambda ps: MuonAdamW([dict(params=ps, lr=0.02, use_muon=True)], ns_dtype="float32"),
    }.items():
        params = block_matrices(args.depth, args.aspect_ratio)
        contenders[name] = make(params)
    print(f"{len(params)} matrices of shapes {sorted({tuple(p.shape) for p in params})}, {args.threads} threads")
    results = {}
    for _ in range(2):  # interleaved rounds; keep each contender's best median
        for name, optimizer in contenders.items():
            timer = Timer("optimizer.step()", globals={"optimizer": optimizer}, num_threads=args.threads)
            median = timer.blocked_autorange(min_run_time=args.min_run_time).median
            results[name] = min(results.get(name, median), median)
    reference = results["torch.optim.Muon (bf16)"]
    for name, seconds in results.items():
        print(f"{name:26s} {seconds * 1e3:9.2f} ms/step   ratio vs torch {seconds / reference:.3f}")


if __name__ == "__main__":
    main()

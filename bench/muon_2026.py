"""Our MuonAdamW with nanochat's 2026 options vs nanochat's own fused Muon step, side by side on the same inputs.

    python bench/muon_2026.py --nanochat .nanochat [--steps 3]

`--nanochat` is a copy of karpathy/nanochat (92d63d4 or later) in an ignored folder; its `muon_step_fused` (momentum,
MuonEq, Polar Express, Muon+, NorMuon, cautious weight decay) runs with its own defaults (beta2 0.9, compiled, fp32
on a CPU). Ours: MuonAdamW(orthogonalizer="polar_express", muon_plus=True, normuon_beta2=0.9,
cautious_weight_decay=True) in fp32. Prints the largest difference of the weights after each step, per shape.
"""

import argparse
import sys
from pathlib import Path

import torch

from hansard_hf.optimization import MuonAdamW

SHAPES = [(64, 32), (32, 64), (48, 48)]  # tall, wide, square: NorMuon reduces over rows or columns
MATRICES, LR, MOMENTUM, WEIGHT_DECAY, BETA2 = 4, 0.02, 0.95, 0.2, 0.9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanochat", required=True, help="folder of a nanochat checkout (92d63d4 or later)")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.nanochat).resolve()))
    from nanochat.optim import muon_step_fused

    generator = torch.Generator().manual_seed(0)
    for shape in SHAPES:
        start = torch.randn(MATRICES, *shape, generator=generator) * 0.1
        grads = [torch.randn(MATRICES, *shape, generator=generator) for _ in range(args.steps)]
        theirs = start.clone()
        momentum = torch.zeros_like(theirs)
        second = torch.zeros((MATRICES, shape[0], 1) if shape[0] >= shape[1] else (MATRICES, 1, shape[1]))
        scalars = {name: torch.tensor(value) for name, value in dict(
            momentum=MOMENTUM, lr=LR * max(1.0, shape[0] / shape[1]) ** 0.5, wd=WEIGHT_DECAY, beta2=BETA2).items()}
        ours = [torch.nn.Parameter(m.clone()) for m in start]
        optimizer = MuonAdamW([dict(params=ours, lr=LR, use_muon=True)], momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                              ns_dtype="float32", ns_compile=False, orthogonalizer="polar_express", muon_plus=True,
                              normuon_beta2=BETA2, cautious_weight_decay=True)
        differences = []
        for grad in grads:
            muon_step_fused(grad.clone(), theirs, momentum, second, scalars["momentum"], scalars["lr"], scalars["wd"],
                            scalars["beta2"], 5, -1 if shape[0] >= shape[1] else -2)
            for p, g in zip(ours, grad):
                p.grad = g.clone()
            optimizer.step()
            differences.append(max((p.detach() - t).abs().max().item() for p, t in zip(ours, theirs)))
        moved = (theirs - start).abs().max().item()
        print(f"{shape}: largest |ours - nanochat| after each step {['%.2e' % d for d in differences]} "
              f"(weights moved up to {moved:.3f})")


if __name__ == "__main__":
    main()

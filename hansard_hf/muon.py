"""Muon: Nesterov momentum whose update is orthogonalised by 5 Newton-Schulz iterations (nanochat, Oct 2025).

Under torch.distributed (DDP: every rank holds the same averaged gradients) each rank orthogonalises only its share
of the matrices, block-cyclically within each shape, and `all_gather` hands every rank the others' results: the
update equals the single-process one, and no rank repeats the whole Newton-Schulz work.
"""

import torch
import torch.distributed as dist

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def zeropower_via_newtonschulz5(grad: torch.Tensor, steps: int = 5, dtype=torch.bfloat16, eps: float = 1e-7):
    """Approximately U V^T of grad = U S V^T: the quintic Newton-Schulz iteration on the Frobenius-normalised matrix."""
    a, b, c = NS_COEFFICIENTS
    x = grad.to(dtype)
    tall = grad.size(0) > grad.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):  # x <- a x + (b A + c A^2) x with A = x x^T
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def nesterov_momentum(grad: torch.Tensor, buffer: torch.Tensor, momentum: float) -> torch.Tensor:
    """Update the momentum buffer in place and return the Nesterov look-ahead update."""
    buffer.lerp_(grad, 1 - momentum)
    return grad.lerp(buffer, momentum)


def lr_scale(shape: torch.Size) -> float:
    """Muon's per-matrix LR multiplier max(1, rows/cols) ** 0.5 (weights are stored out x in)."""
    return max(1.0, shape[0] / shape[1]) ** 0.5


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def orthogonalize(updates: list[torch.Tensor], steps: int, dtype) -> tuple[list[torch.Tensor], int]:
    """Newton-Schulz of every update, the work split across ranks. Returns the results and how many this rank did."""
    rank, world = _rank_and_world()
    if world == 1:
        return [zeropower_via_newtonschulz5(u, steps, dtype) for u in updates], len(updates)
    by_shape: dict[torch.Size, list[int]] = {}
    for index, update in enumerate(updates):
        by_shape.setdefault(update.shape, []).append(index)
    results: list[torch.Tensor | None] = [None] * len(updates)
    done = 0
    for shape, indices in by_shape.items():
        for start in range(0, len(indices), world):
            block = indices[start : start + world]  # rank r owns block[r]; the tail block pads with zeros
            if rank < len(block):
                mine = zeropower_via_newtonschulz5(updates[block[rank]], steps, dtype).contiguous()
                done += 1
            else:
                mine = torch.zeros(shape, dtype=dtype, device=updates[block[0]].device)
            gathered = [torch.empty_like(mine) for _ in range(world)]
            dist.all_gather(gathered, mine)
            for owner, index in enumerate(block):
                results[index] = gathered[owner]
    return results, done

"""Muon: Nesterov momentum whose update is orthogonalised by 5 Newton-Schulz iterations (nanochat, Oct 2025).

Under torch.distributed (DDP: every rank holds the same averaged gradients) each rank orthogonalises only its share
of the matrices, block-cyclically within each shape, and `all_gather` hands every rank the others' results: the
update equals the single-process one, and no rank repeats the whole Newton-Schulz work.

Under FSDP2 every rank holds only its rows of each matrix (`Shard(0)`). Newton-Schulz needs whole matrices, so
`orthogonalize_shards` assembles each one on exactly one owner rank (owners dealt round-robin across all shapes,
batched by shape, one `all_to_all` there and one back), never running Newton-Schulz on a shard.
"""

import torch
import torch.distributed as dist

from .choices import Orthogonalizer, check_choice
from .distributed import rank_and_world

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def zeropower_via_newtonschulz5(grad: torch.Tensor, steps: int = 5, dtype=torch.bfloat16, eps: float = 1e-7):
    """Approximately U V^T of grad = U S V^T: the quintic Newton-Schulz iteration on the Frobenius-normalised matrix.

    `grad` is one matrix or a stack of same-shape matrices (batched matmuls: one kernel per iteration for all).
    """
    a, b, c = NS_COEFFICIENTS
    x = grad.to(dtype)
    tall = grad.size(-2) > grad.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    fused = torch.addmm if x.ndim == 2 else torch.baddbmm  # beta * input + alpha * (m1 @ m2) in one kernel
    for _ in range(steps):  # x <- a x + (b A + c A^2) x with A = x x^T
        gram = x @ x.mT
        x = fused(x, fused(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def nesterov_momentum(grad: torch.Tensor, buffer: torch.Tensor, momentum: float) -> torch.Tensor:
    """Update the momentum buffer in place and return the Nesterov look-ahead update."""
    buffer.lerp_(grad, 1 - momentum)
    return grad.lerp(buffer, momentum)


def lr_scale(shape: torch.Size) -> float:
    """Muon's per-matrix LR multiplier max(1, rows/cols) ** 0.5 (weights are stored out x in)."""
    return max(1.0, shape[0] / shape[1]) ** 0.5


# nanochat 92d63d4's (2026) orthogonaliser: Polar Express (arXiv 2505.16932), one (a, b, c) per iteration, computed
# for 5 iterations with safety factor 2e-2 and cushion 2.
POLAR_EXPRESS_COEFFICIENTS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)


def equilibrate_rows(x: torch.Tensor) -> torch.Tensor:
    """MuonEq: every row of each matrix rescaled to the matrix's mean row norm (||X||_F / sqrt(rows))."""
    target = x.float().norm(dim=(-2, -1), keepdim=True) / x.size(-2) ** 0.5
    rows = x.float().norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return x * (target / rows).to(x.dtype)


def polar_express(grad: torch.Tensor, steps: int = 5, dtype=torch.bfloat16, eps: float = 1e-6) -> torch.Tensor:
    """nanochat's 2026 orthogonalisation of a matrix or a stack: MuonEq row equilibration, Frobenius normalisation
    with a 1.01 margin, then `steps` Polar Express iterations x <- a x + (b A + c A^2) x, A = x x^T."""
    x = equilibrate_rows(grad.to(dtype))
    x = x / (x.norm(dim=(-2, -1), keepdim=True) * 1.01 + eps)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    for a, b, c in POLAR_EXPRESS_COEFFICIENTS[:steps]:
        gram = x @ x.mT
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.mT if tall else x


def muon_plus(update: torch.Tensor) -> torch.Tensor:
    """Muon+: each matrix's Frobenius norm snapped to sqrt(min(rows, cols)), an exactly semi-orthogonal matrix's."""
    target = min(update.size(-2), update.size(-1)) ** 0.5
    return update * (target / update.float().norm(dim=(-2, -1), keepdim=True).clamp_min(1e-6)).to(update.dtype)


def normuon_state_shape(shape: torch.Size) -> tuple[int, int]:
    """NorMuon's factored second moment: one value per row (tall or square matrices) or per column (wide ones)."""
    return (shape[-2], 1) if shape[-2] >= shape[-1] else (1, shape[-1])


def normuon(update: torch.Tensor, second_moment: torch.Tensor, beta2: float, group=None, rows: int | None = None):
    """NorMuon variance reduction (arXiv 2510.05491, as nanochat 92d63d4) of one matrix: `second_moment` <- lerp
    towards the mean square of each row (or column), in place; the update's rows (columns) are scaled by its rsqrt,
    then all together so that the update keeps its Frobenius norm. Under FSDP2 `update` and a per-row
    `second_moment` are this rank's rows of a matrix of `rows` rows: the column sums and the two norms are summed
    over `group`."""
    per_row = second_moment.size(-1) == 1
    squares = update.float().square()
    if per_row:
        size, mean_square = update.size(-1), squares.mean(dim=-1, keepdim=True)
    else:
        size, column = rows or update.size(-2), squares.sum(dim=-2, keepdim=True)
        if group is not None:
            dist.all_reduce(column, group=group)
        mean_square = column / size
    second_moment.lerp_(mean_square.to(second_moment.dtype), 1 - beta2)
    scale = second_moment.clamp_min(1e-10).rsqrt()
    norms = torch.stack([mean_square.sum() * size, ((mean_square * size) * scale.float().square()).sum()])
    if group is not None and per_row:  # the rows are spread over the ranks; the columns' sums are already whole
        dist.all_reduce(norms, group=group)
    norm, scaled_norm = norms.sqrt()
    return update * (scale * (norm / scaled_norm.clamp_min(1e-10))).to(update.dtype)


def cautious_update(weight: torch.Tensor, update: torch.Tensor, lr: float, weight_decay: float) -> None:
    """weight -= lr * update + lr * weight_decay * weight, the decay only where update and weight agree in sign."""
    mask = (update * weight) >= 0
    weight.sub_(lr * update + lr * weight_decay * weight * mask)


_compiled = {}


def orthogonalizer(method: str = "newton_schulz", compile: bool = False):
    """The orthogonalising function of `method` (`choices.Orthogonalizer`), under torch.compile (one graph per matrix
    shape, built on first use) when `compile`."""
    check_choice("orthogonalizer", method, Orthogonalizer)
    function = {"newton_schulz": zeropower_via_newtonschulz5, "polar_express": polar_express}[method]
    if not compile:
        return function
    if method not in _compiled:
        _compiled[method] = torch.compile(function, dynamic=False)
    return _compiled[method]


def _then(orthogonalize_batch, finish):
    """`orthogonalize_batch` followed by `finish` on its (batched, whole-matrix) result, when there is one."""
    if finish is None:
        return orthogonalize_batch
    return lambda x, steps, dtype: finish(orthogonalize_batch(x, steps, dtype))


def orthogonalize(updates: list[torch.Tensor], steps: int, dtype, compile: bool = False,
                  method: str = "newton_schulz", finish=None) -> tuple[list[torch.Tensor], int]:
    """Newton-Schulz (or `method`) of every update, batched by shape and split across ranks: within a shape, rank r
    takes matrices r, r + world, ...; one all_gather per shape shares the results. `finish` (e.g. `muon_plus`)
    runs on each batch of whole results before they are shared. Returns them and this rank's count."""
    newtonschulz = _then(orthogonalizer(method, compile), finish)
    rank, world = rank_and_world()
    by_shape: dict[torch.Size, list[int]] = {}
    for index, update in enumerate(updates):
        by_shape.setdefault(update.shape, []).append(index)
    results: list[torch.Tensor | None] = [None] * len(updates)
    done = 0
    for shape, indices in by_shape.items():
        mine = indices[rank::world]
        share = -(-len(indices) // world)  # every rank contributes the same number of matrices (zero padded)
        stacked = torch.zeros((share, *shape), dtype=dtype, device=updates[indices[0]].device)
        if mine:
            stacked[: len(mine)] = newtonschulz(torch.stack([updates[i] for i in mine]), steps, dtype)
        done += len(mine)
        gathered = [stacked] if world == 1 else [torch.empty_like(stacked) for _ in range(world)]
        if world > 1:
            dist.all_gather(gathered, stacked)
        for owner, block in enumerate(gathered):
            for slot, index in enumerate(indices[owner::world]):
                results[index] = block[slot]
    return results, done


def orthogonalize_shards(shards: list[torch.Tensor], shapes: list[torch.Size], steps: int, dtype, compile: bool = False,
                         group=None, method: str = "newton_schulz", finish=None) -> tuple[list[torch.Tensor], int]:
    """Newton-Schulz of row-sharded matrices: `shards[i]` is this rank's rows of matrix i (full shape `shapes[i]`,
    rows split as torch.chunk splits them, FSDP2's layout). Within a shape, matrix k goes to owner rank
    (offset + k) % world, the offset carrying on from shape to shape so that owners stay balanced; an all_to_all
    sends every shard to its owner, which orthogonalises its whole matrices in one batch, and an all_to_all sends
    each rank its rows of the results (`finish` runs on the owner's whole results first). Returns this rank's rows
    of every result and the matrices it orthogonalised."""
    newtonschulz = _then(orthogonalizer(method, compile), finish)
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    by_shape: dict[tuple, list[int]] = {}
    for index, shape in enumerate(shapes):
        by_shape.setdefault(tuple(shape), []).append(index)
    results: list[torch.Tensor | None] = [None] * len(shards)
    done = offset = 0
    for (rows, cols), indices in by_shape.items():
        per_rank = -(-rows // world)  # rows of the largest shard; smaller ones are zero padded
        slots = -(-(offset + len(indices)) // world)  # matrices per owner, padding included
        place = [((offset + k) % world, (offset + k) // world) for k in range(len(indices))]  # (owner, slot)
        send = shards[indices[0]].new_zeros(world, slots, per_rank, cols, dtype=dtype)  # [owner, slot, rows, cols]
        for (owner, slot), index in zip(place, indices):
            send[owner, slot, : shards[index].shape[0]] = shards[index]
        received = torch.empty_like(send)  # [source rank, slot, rows, cols]: the owner's matrices, rank by rank
        dist.all_to_all_single(received, send, group=group)
        whole = received.permute(1, 0, 2, 3).reshape(slots, world * per_rank, cols)  # [slot, all rows, cols]
        mine = [slot for owner, slot in place if owner == rank]
        if mine:
            whole[mine, :rows] = newtonschulz(whole[mine, :rows], steps, dtype)
        done += len(mine)
        back = whole.reshape(slots, world, per_rank, cols).permute(1, 0, 2, 3).contiguous()  # [dest rank, slot, ...]
        mine_back = torch.empty_like(send)  # not `received`: `back` may share its storage (one slot: no copy made)
        dist.all_to_all_single(mine_back, back, group=group)  # [owner, slot, my rows, cols]
        for (owner, slot), index in zip(place, indices):
            results[index] = mine_back[owner, slot, : shards[index].shape[0]]
        offset = (offset + len(indices)) % world
    return results, done

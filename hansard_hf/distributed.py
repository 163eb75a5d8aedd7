"""One process decides, every process follows: for work that must happen once (the Hub, messages to the user); and
what a model FSDP2 shards asks of every process (each forward needs them all)."""

import contextlib
import sys

from accelerate import PartialState
from accelerate.utils import broadcast_object_list

USER_ERRORS = (ValueError, OSError)  # bad input: one message, printed once (see cli.main)


def on_main_process(make):
    """`make()` run by the main process only; every process returns its result, or raises its error. A user-facing
    error (USER_ERRORS) is raised as such everywhere; any other stops the other processes quietly (SystemExit)."""
    state = PartialState()
    if state.num_processes == 1:
        return make()
    box = [None]
    if state.is_main_process:
        try:
            box = [(True, make())]
        except Exception as error:  # noqa: BLE001 - handed to the other processes, then raised here
            box = [(False, error)]
    broadcast_object_list(box)
    ok, value = box[0]
    if ok:
        return value
    if state.is_main_process or isinstance(value, USER_ERRORS):
        raise value
    raise SystemExit(1)


def is_distributed() -> bool:
    """Whether this process is one of a torch.distributed group (no torch imported: it is not)."""
    if "torch" not in sys.modules:  # the command line stays light
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def sharded(model) -> bool:
    """Whether FSDP2 shards `model`: then each forward gathers weights from every rank, so every rank must run it."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gathered(*modules):
    """Within it, the weights of those `modules` that FSDP2 shards are whole on every rank: for code that reads them
    outside the module's own forward, which is where FSDP2 gathers them itself."""
    units = [module for module in modules if sharded(module)]
    for unit in units:
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, the number of processes); (0, 1) outside torch.distributed."""
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def reduce_across_processes(tensor, op: str = "sum"):
    """`tensor` reduced in place over every process ("sum" or "min"); unchanged in a single process."""
    if is_distributed():
        import torch.distributed as dist

        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op.upper()))
    return tensor


def all_finite(model) -> bool:
    """Whether every weight of `model` is finite in every process (FSDP2 shards checked where they live): one host
    sync, for the moments that must not keep a diverged model (a checkpoint, the final save)."""
    import torch

    counts = [(~torch.isfinite(p.to_local() if hasattr(p, "to_local") else p)).sum() for p in model.parameters()]
    bad = torch.stack(counts).sum().double()
    reduce_across_processes(bad)
    return bad.item() == 0


def wait_for_everyone() -> None:
    """A barrier when this is one of several processes (so the main process can say why before the others exit)."""
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()

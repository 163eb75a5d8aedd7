"""The cost of a checkpoint of a recipe's size: writing and loading its full state (fp32 weights, Muon momentum and
AdamW moments), and checking it whole: our manifest's checksum (xxh3_128) beside sha256 (the reference, what the
manifest used before), side by side in one process.

    python bench/checkpoint_cost.py [--recipe d24] [--folder /tmp/checkpoint-bench]

Writes the checkpoint's two big files as a run writes them (the fp32 weights with safetensors, the optimizer state
with torch.save), then times: writing them, our checksum of both (at a save, read back from the page cache), sha256
of both, `mark_complete` (a save's manifest), and what a resume does: `problems()` (every byte checked) and loading
both files, first with the files in the page cache, then, where this user may drop the page cache, from the disk.
Prints seconds and the ratios to the write.
"""

import argparse
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hansard_hf.checkpoints import mark_complete, problems
from hansard_hf.files import checksum
from hansard_hf.memory import checkpoint_bytes
from hansard_hf.modeling_hansard_gpt import HansardGPTForCausalLM
from hansard_hf.optimization import param_groups
from hansard_hf.recipe import Recipe


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="d24")
    parser.add_argument("--folder", default="/tmp/checkpoint-bench")
    args = parser.parse_args()
    config = Recipe.load(args.recipe).model_config()
    with torch.device("meta"):
        meta = HansardGPTForCausalLM(config)
    matrices = {id(p) for p in param_groups(meta)[0]["params"]}
    weights = {name: torch.randn(p.shape) for name, p in meta.named_parameters()}
    optimizer = {}  # Muon's momentum for the block matrices, AdamW's two moments for the rest (as MuonAdamW keeps)
    for name, p in meta.named_parameters():
        moments = ("momentum_buffer",) if id(p) in matrices else ("exp_avg", "exp_avg_sq")
        optimizer.update({f"{name}.{m}": torch.randn(p.shape) for m in moments})
    folder = Path(args.folder) / "checkpoint-1"
    shutil.rmtree(folder.parent, ignore_errors=True)
    folder.mkdir(parents=True)
    write = timed(lambda: (save_file(weights, folder / "model.safetensors"), torch.save(optimizer, folder / "optimizer.pt")))
    files = [folder / "model.safetensors", folder / "optimizer.pt"]
    size = sum(f.stat().st_size for f in files)
    ours = timed(lambda: [checksum(f) for f in files])
    sha = timed(lambda: [checksum(f, "sha256") for f in files])
    mark = timed(lambda: mark_complete(folder, 1))
    check = timed(lambda: problems(folder))
    load = timed(lambda: (load_file(files[0]), torch.load(files[1], weights_only=True)))
    cold = None
    try:  # a resume after a restart reads from the disk
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        cold = timed(lambda: ([checksum(f) for f in files], load_file(files[0]), torch.load(files[1], weights_only=True)))
    except OSError:
        pass
    print(f"{args.recipe}: {size / 1e9:.2f} GB on disk (the plan: {checkpoint_bytes(config) / 1e9:.2f} GB)")
    print(f"write (safetensors + torch.save)  {write:7.2f} s")
    print(f"xxh3_128 of both (ours)           {ours:7.2f} s   {size / ours / 1e9:5.1f} GB/s   {ours / write:.3f} of the write")
    print(f"sha256 of both (reference)        {sha:7.2f} s   {size / sha / 1e9:5.1f} GB/s   {sha / write:.3f} of the write")
    print(f"ours / sha256                     {ours / sha:7.3f}")
    print(f"mark_complete (at a save)         {mark:7.2f} s;  problems() (at a resume) {check:.2f} s")
    print(f"save = write + mark_complete      {write + mark:7.2f} s")
    print(f"load (page cache)                 {load:7.2f} s;  resume = problems() + load {check + load:.2f} s")
    print("resume from the disk (checksums + load) " + (f"{cold:.2f} s" if cold is not None else "(cannot drop the page cache here)"))
    shutil.rmtree(folder.parent)


if __name__ == "__main__":
    main()

"""Run by test_distributed.py under `accelerate launch --num_processes 2 --cpu`: train a tiny model a few steps
(with "2026": nanochat's 2026 architecture, Muon, AdamW groups and schedules).

Writes the final weights (rank 0) and, per rank, how many matrices that rank orthogonalised.
"""

import json
import sys
from pathlib import Path

import torch

from hansard_hf import HansardGPTForCausalLM
from hansard_hf.configuration_hansard_gpt import NANOCHAT_2026
from hansard_hf import HansardTrainer
from conftest import tiny_config
from trainer_helpers import SEQ, PackedRows, tiny_arguments
from hansard_hf.presets import NANOCHAT_2026_TRAINING

STEPS = 3
RECIPE_2026 = {**NANOCHAT_2026_TRAINING, "warmup_steps": 1}  # the preset's optimizer, its warmup fitted to 3 steps


class RecordingRows(PackedRows):
    """PackedRows that remembers which rows this process read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read = []

    def __getitem__(self, index):
        self.read.append(index)
        return super().__getitem__(index)


def train(out: Path, device_batch_size: int, recipe_2026: bool = False) -> HansardTrainer:
    torch.manual_seed(0)
    args = tiny_arguments(out, device_batch_size=device_batch_size, max_steps=STEPS,
                          **(RECIPE_2026 if recipe_2026 else {}))
    config = tiny_config(**NANOCHAT_2026, sliding_window=5) if recipe_2026 else tiny_config()
    trainer = HansardTrainer(model=HansardGPTForCausalLM(config), args=args, train_dataset=RecordingRows(48, SEQ, 97))
    trainer.train()
    return trainer


if __name__ == "__main__":
    out = Path(sys.argv[1])
    trainer = train(out, device_batch_size=2, recipe_2026="2026" in sys.argv[2:])
    rank, world = trainer.args.process_index, trainer.args.world_size
    optimizer = trainer.optimizer.optimizer  # accelerate wraps it
    report = dict(rank=rank, world=world, accumulation=trainer.args.gradient_accumulation_steps,
                  orthogonalized=optimizer.orthogonalized, ddp=type(trainer.model_wrapped).__name__,
                  bucket_views=getattr(trainer.model_wrapped, "gradient_as_bucket_view", None),
                  rows=trainer.train_dataset.read)
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    if rank == 0:
        torch.save(trainer.model.state_dict(), out / "weights.pt")
    trainer.accelerator.wait_for_everyone()  # every rank done before any exits, then the group closed (as fsdp_worker)
    torch.distributed.destroy_process_group()

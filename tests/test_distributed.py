"""Two real CPU processes (accelerate launch, gloo): Muon's work is split across ranks, the result is unchanged."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import launch_command, worker_env
from distributed_worker import STEPS, train
from hansard_hf.serving import free_port

TESTS = Path(__file__).parent


def launch(*arguments, out: Path, variant: str = "2025") -> subprocess.Popen:
    """`accelerate launch ARGUMENTS tests/distributed_worker.py OUT VARIANT`, started (the caller waits)."""
    command = launch_command("accelerate", *arguments, "--mixed_precision", "no", "--dynamo_backend", "no",
                             TESTS / "distributed_worker.py", out, variant)
    return subprocess.Popen(command, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(*processes: subprocess.Popen) -> None:
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-4000:]


def assert_two_ranks_equal_one_process(out: Path, tmp_path: Path, variant: str = "2025") -> None:
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2] and reports[0]["ddp"] == "DistributedDataParallel"
    assert [r["bucket_views"] for r in reports] == [True, True]  # DDP's buckets are the gradients: no second copy
    assert [r["accumulation"] for r in reports] == [1, 1]  # 2 ranks x 2 rows x 16 tokens = 64 per step
    rank0, rank1 = (set(r["rows"]) for r in reports)
    assert not rank0 & rank1 and rank0 | rank1 >= set(range(STEPS * 4))  # disjoint, none skipped (+ prefetch)

    single = train(tmp_path / "one", device_batch_size=2, recipe_2026=variant == "2026")  # 2 rows x 2 accumulation
    assert single.args.gradient_accumulation_steps == 2
    # two layers of q, k, v, o, fc1, fc2 (2026: and the value gate of layer 1, which rank 0 takes)
    matrices, gates = 2 * 6, int(variant == "2026")
    assert single.optimizer.optimizer.orthogonalized == STEPS * (matrices + gates)
    # each rank orthogonalised half: 4 of the 8 square matrices, 1 of 2 fc1, 1 of 2 fc2, per step
    assert [r["orthogonalized"] for r in reports] == [STEPS * (matrices // 2 + gates), STEPS * matrices // 2]

    distributed = torch.load(out / "weights.pt")
    for name, weight in single.model.state_dict().items():
        torch.testing.assert_close(distributed[name], weight, atol=2e-5, rtol=1e-4, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["2025", "2026"])
def test_two_processes_match_one_and_split_the_newton_schulz_work(tmp_path, variant):
    """Also with nanochat's 2026 recipe: its architecture, Muon (Polar Express, Muon+, NorMuon, cautious decay),
    AdamW groups and schedules, through HansardTrainer under DDP."""
    # accelerate 1.15 runs `--cpu` jobs in one process unless MPI is installed; `--multi_gpu` starts them through
    # torchrun, and use_cpu=True in the worker's arguments makes them CPU processes talking over gloo.
    finish(launch("--multi_gpu", "--num_processes", "2", "--num_machines", "1", out=tmp_path / "two", variant=variant))
    assert_two_ranks_equal_one_process(tmp_path / "two", tmp_path, variant)


@pytest.mark.slow
def test_two_machines_match_one_process(tmp_path):
    """The multi-node config (accelerate_multinode.yaml: one `accelerate launch` per node, each with its
    --machine_rank and the head node's address, as train_hansard.sbatch runs it), here as two machine ranks on one
    host over loopback."""
    port = str(free_port())  # for the head node's rendezvous
    nodes = [launch("--config_file", str(TESTS.parent / "accelerate_multinode.yaml"), "--num_processes", "2",
                    "--num_machines", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
                    "--main_process_port", port, out=tmp_path / "nodes") for rank in (0, 1)]
    finish(*nodes)
    assert_two_ranks_equal_one_process(tmp_path / "nodes", tmp_path)

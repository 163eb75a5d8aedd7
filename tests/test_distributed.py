"""Two real CPU processes (accelerate launch, gloo): Muon's work is split across ranks, the result is unchanged."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distributed_worker import STEPS, train

TESTS = Path(__file__).parent


@pytest.mark.slow
def test_two_processes_match_one_and_split_the_newton_schulz_work(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    # accelerate 1.15 runs `--cpu` jobs in one process unless MPI is installed; `--multi_gpu` starts them through
    # torchrun, and use_cpu=True in the worker's arguments makes them CPU processes talking over gloo.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(TESTS / "distributed_worker.py"), str(tmp_path / "two")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    reports = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2] and reports[0]["ddp"] == "DistributedDataParallel"
    assert [r["bucket_views"] for r in reports] == [True, True]  # DDP's buckets are the gradients: no second copy
    assert [r["accumulation"] for r in reports] == [1, 1]  # 2 ranks x 2 rows x 16 tokens = 64 per step
    rank0, rank1 = (set(r["rows"]) for r in reports)
    assert not rank0 & rank1 and rank0 | rank1 >= set(range(STEPS * 4))  # disjoint, none skipped (+ prefetch)

    single = train(tmp_path / "one", device_batch_size=2)  # 1 process: 2 rows x 2 accumulation steps
    assert single.args.gradient_accumulation_steps == 2
    matrices = 2 * 6  # two layers of q, k, v, o, fc1, fc2
    assert single.optimizer.optimizer.orthogonalized == STEPS * matrices
    # each rank orthogonalised half: 4 of the 8 square matrices, 1 of 2 fc1, 1 of 2 fc2, per step
    assert [r["orthogonalized"] for r in reports] == [STEPS * matrices // 2] * 2

    distributed = torch.load(tmp_path / "two" / "weights.pt")
    for name, weight in single.model.state_dict().items():
        torch.testing.assert_close(distributed[name], weight, atol=2e-5, rtol=1e-4, msg=name)

"""Every run states its layout (parallelism, world size, micro-batch, accumulation) and a launch that did not get
the parallelism it asked for stops before any work, naming the fix; `hansard-hf plan` knows what needs FSDP2."""

import re
import subprocess
from pathlib import Path

import pytest

from hansard_hf import HansardGPTConfig
from hansard_hf.memory import state_bytes, training_bytes
from hansard_hf.layout import Layout, describe_layout
from hansard_hf.plan import describe_plan, plan
from hansard_hf.recipe import Recipe
from trainer_helpers import tiny_arguments
from conftest import launch_command, no_gpu, offline_env

ROOT = Path(__file__).resolve().parents[1]


def test_the_layout_line_names_what_is_in_force(tmp_path):
    args = tiny_arguments(tmp_path, max_steps=1)
    args.resolve(HansardGPTConfig(depth=1, vocab_size=64))
    assert describe_layout(args) == ("layout     single process, world size 1: 2 rows x 2 accumulation per process, "
                                     "64 tokens per step")


def run(command: list[str], home: Path) -> subprocess.CompletedProcess:
    env = offline_env(home, WANDB_MODE="offline")
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
@no_gpu
def test_an_fsdp_config_on_a_machine_without_gpus_stops_before_any_work(corpus, tmp_path):
    """accelerate starts both processes but applies no FSDP (each alone, or DDP with use_cpu): named, not trained."""
    done = run(launch_command("accelerate", "--config_file", ROOT / "accelerate_fsdp2.yaml", "--num_processes", "2",
                              "--mixed_precision", "no", ROOT / "recipes" / "train.py", "tiny", f"--dataset={corpus}",
                              f"--output_dir={tmp_path / 'run'}"), tmp_path / "home")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("hansard-hf train: error:")]
    # accelerate >= 1.15 runs each process alone, older releases run DDP over CPU processes: neither is FSDP
    assert errors and all(re.search(r"asks for FSDP, but accelerate runs (single process|DDP) here", e) for e in errors)
    assert "--multi_gpu --num_processes N ... --use_cpu=true" in errors[0]
    assert not (tmp_path / "home").exists() and not (tmp_path / "run").exists()


@pytest.mark.slow
@no_gpu
def test_n_processes_never_each_train_alone(corpus, tmp_path):
    """torchrun without use_cpu: accelerate >= 1.15 leaves each process alone (refused before any work); older
    releases make them one DDP group over gloo (which the layout line says)."""
    done = run(launch_command("torchrun", "--nproc_per_node", "2", ROOT / "recipes" / "train.py", "tiny",
                              f"--dataset={corpus}", f"--output_dir={tmp_path / 'run'}", "--max_steps=1",
                              "--eval_every=0"), tmp_path / "home")
    assert "layout     single process" not in done.stdout
    if "layout     DDP, world size 2" not in done.stdout:
        assert done.returncode != 0
        assert "the launcher started 2 processes (WORLD_SIZE=2) but accelerate runs this one alone" in done.stderr
        assert not (tmp_path / "home").exists() and not (tmp_path / "run").exists()


def test_fsdp2_divides_the_state_among_the_gpus():
    config = Recipe.load("d48").model_config()
    whole = state_bytes(config)
    for gpus in (2, 8, 64):
        sharded = state_bytes(config, shards=gpus)
        assert whole / gpus < sharded < whole / gpus + 2 * 6 * config.num_parameters() / 4  # + units in flight
    assert training_bytes(config, 16, 2048, 2, shards=8) < training_bytes(config, 16, 2048, 2)


def test_the_plan_says_which_layout_a_recipe_needs():
    d48, d80 = plan(Recipe.load("d48")), plan(Recipe.load("d80"))
    assert d48.layout == Layout.DDP
    assert d80.params > 6e9 and d80.layout == Layout.FSDP2  # its state alone (~92 GB) is more than an 80 GB GPU
    assert d80.memory[Layout.DDP].every_n_layers is None and d80.memory[Layout.FSDP2].memory_gb < 0.85 * 85
    assert "layout       FSDP2 (accelerate launch --config_file accelerate_fsdp2.yaml ...)" in describe_plan(d80)
    assert "more GPUs" in describe_plan(plan(Recipe.load("d80"), gpus=1))  # one GPU: neither fits

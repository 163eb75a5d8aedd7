"""GPU-only checks (skipped without CUDA): a bf16 training step, torch.compile, peak memory at each recipe's
micro-batch (d16 to d48) against 80 GB and the estimate, and `hansard-hf train` on the GPU stopped by SIGTERM.

Written without a GPU at hand (this project's CI has none): run them on a GPU machine with `pytest tests/test_gpu.py`.
"""

import math
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM, HansardTrainer
from hansard_hf.memory import training_bytes
from hansard_hf.optimization import MuonAdamW, param_groups
from hansard_hf.plan import plan
from hansard_hf.recipe import Recipe
from hansard_hf.memory import checkpoint_to_fit
from hansard_hf.checkpoints import problems
from hansard_hf.progress import read_state, status_text
from trainer_helpers import PackedRows, losses, tiny_arguments
from cli_runs import command, logged_step, wait_until
from conftest import offline_env

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def small_model(seed=0):
    torch.manual_seed(seed)
    return HansardGPTForCausalLM(HansardGPTConfig(depth=4, vocab_size=8192, max_position_embeddings=512))


def test_bf16_training_steps_track_fp32(tmp_path):
    data = PackedRows(64, 512, 8192)
    losses = {}
    for bf16 in (False, True):
        args = tiny_arguments(tmp_path / str(bf16), max_seq_len=512, device_batch_size=4, total_batch_size=4 * 512,
                              max_steps=8, bf16=bf16, use_cpu=False)
        trainer = HansardTrainer(model=small_model(), args=args, train_dataset=data)
        trainer.train()
        losses[bf16] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[True][-1] < losses[True][0]
    assert losses[True] == pytest.approx(losses[False], rel=0.05)


def test_torch_compile_matches_eager_on_cuda():
    model = small_model().cuda().train()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    ids = torch.randint(0, 8192, (4, 512), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        eager = model(input_ids=ids, shift_labels=ids).loss
        compiled = torch.compile(model, dynamic=False)(input_ids=ids, shift_labels=ids).loss
    assert compiled.item() == pytest.approx(eager.item(), rel=1e-2)


@pytest.mark.parametrize("depth", [16, 24, 36, 48])
def test_peak_memory_of_a_training_step_at_the_recipe_micro_batch_fits_80gb(depth, tmp_path):
    """One bf16 training step (forward, backward, optimizer step) at the recipe's one-GPU micro-batch, with the
    activation checkpointing the Trainer picks: under 80 GB, and within the estimate of hansard_hf.memory."""
    recipe = Recipe.load(RECIPES / f"d{depth}.json", [f"--output_dir={tmp_path}", "--report_to=none", "--run=dummy"])
    args = recipe.training_arguments()
    with torch.device("cuda"):
        model = HansardGPTForCausalLM(recipe.model_config())
    args.resolve(model.config)
    micro, seq = args.per_device_train_batch_size, args.budget.max_seq_len
    assert micro == plan(recipe, gpus=1).device_batch_size
    every = checkpoint_to_fit(model, args, torch.cuda.get_device_properties(0).total_memory)
    optimizer = MuonAdamW(param_groups(model))
    ids = torch.randint(0, model.config.vocab_size, (micro, seq), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    for _ in range(2):  # the second step has the optimizer state
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(input_ids=ids, shift_labels=ids).loss.backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
    peak, estimate = torch.cuda.max_memory_allocated(), training_bytes(model.config, micro, seq, every)
    print(f"d{depth} micro-batch {micro} x {seq}, checkpointing every {every}: peak {peak / 1e9:.1f} GB, "
          f"estimate {estimate / 1e9:.1f} GB")
    assert peak < 80e9
    assert 0.7 * estimate < peak < 1.1 * estimate


def test_sigterm_stops_the_command_on_the_gpu_at_a_complete_checkpoint_and_the_rerun_finishes(tmp_path, corpus):
    """`hansard-hf train` of the tiny recipe in bf16 on the GPU (tokenizer, data, loader, steps, the benchmarks at
    the end): SIGTERM mid-run stops it after one complete checkpoint with exit 143; the same command then resumes
    from that checkpoint and finishes with finite losses."""
    env = (tmp_path, corpus, offline_env(tmp_path / "home", PYTHONUNBUFFERED="1"))
    out = tmp_path / "run"
    train = command(env, out, bf16=True, max_steps=300, save_every=100, eval_every=0)
    with open(tmp_path / "stdout.txt", "w") as stdout:  # a log line per step: more than a pipe holds
        process = subprocess.Popen(train, env=env[2], cwd=tmp_path, stdout=stdout, stderr=subprocess.PIPE, text=True)
        wait_until(process, lambda: logged_step(out) >= 3, "the signal")
        process.send_signal(signal.SIGTERM)
        stderr = process.communicate(timeout=300)[1]
    step = read_state(out)["step"]
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "on this CPU" not in (tmp_path / "stdout.txt").read_text()  # the plan's CPU notice: the run was on the GPU
    assert f"stopped by SIGTERM at step {step}: {out / f'checkpoint-{step}'} is complete" in stderr
    assert step < 300 and problems(out / f"checkpoint-{step}") == []
    done = subprocess.run(train, env=env[2], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Resuming from {out / f'checkpoint-{step}'} (step {step})" in done.stderr
    assert status_text(out).splitlines()[1] == "state       finished: 300 steps; the model is in the folder"
    logged = losses(out)
    assert max(logged) == 300 and all(math.isfinite(loss) for loss in logged.values())

"""GPU-only checks (skipped without CUDA): a bf16 training step, torch.compile, peak memory at the d16 micro-batch.

Written without a GPU at hand (this project's CI has none): run them on a GPU machine with `pytest tests/test_gpu.py`.
"""

from pathlib import Path

import pytest
import torch

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM, HansardTrainer, HansardTrainingArguments
from hansard_hf.optimization import MuonAdamW, param_groups
from hansard_hf.recipe import Recipe, plan
from trainer_helpers import PackedRows

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def small_model(seed=0):
    torch.manual_seed(seed)
    return HansardGPTForCausalLM(HansardGPTConfig(depth=4, vocab_size=8192, max_position_embeddings=512))


def test_bf16_training_steps_track_fp32(tmp_path):
    data = PackedRows(64, 512, 8192)
    losses = {}
    for bf16 in (False, True):
        args = HansardTrainingArguments(output_dir=str(tmp_path / str(bf16)), max_seq_len=512, device_batch_size=4,
                                        total_batch_size=4 * 512, max_steps=8, bf16=bf16, eval_every=0, save_every=0,
                                        logging_steps=1, report_to="none", disable_tqdm=True)
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


def test_peak_memory_at_the_d16_micro_batch_fits_80gb():
    recipe = Recipe.load(RECIPES / "d16.json")
    micro = plan(recipe, gpus=1)["device_batch_size"]
    with torch.device("cuda"):
        model = HansardGPTForCausalLM(recipe.model_config())
    optimizer = MuonAdamW(param_groups(model))
    ids = torch.randint(0, 65536, (micro, 2048), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(input_ids=ids, shift_labels=ids).loss.backward()
    optimizer.step()
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"d16 micro-batch {micro} x 2048: peak {peak:.1f} GiB")
    assert peak < 80

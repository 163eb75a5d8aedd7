"""The memory estimate against the bytes the model really keeps for backward, and the checkpointing it picks."""

from pathlib import Path

import pytest
import torch

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM, HansardTrainer
from hansard_hf.memory import (MEMORY_FRACTION, activation_bytes, checkpointed_layers, checkpointing_to_fit,
                               kept_layer_bytes, training_bytes)
from hansard_hf.modeling_hansard_gpt import _ReluSquaredLinear, _RMSNorm
from hansard_hf.layout import Layout
from hansard_hf.plan import plan
from hansard_hf.recipe import Recipe
from hansard_hf.memory import checkpoint_to_fit
from hansard_hf.configuration_hansard_gpt import NANOCHAT_2026
from conftest import randomized, tiny_config
from trainer_helpers import PackedRows, tiny_arguments

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def kept_for_backward(model, ids) -> int:
    """Bytes of the distinct tensors autograd keeps from one bf16-autocast forward, parameter-shaped ones (bf16
    copies, the loss's lm_head gradient: counted as state) left out."""
    weights = {tuple(p.shape) for p in model.parameters()}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params and tuple(t.shape) not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids, shift_labels=ids).loss.backward()
    return sum(kept.values())


@pytest.mark.parametrize("depth,width,heads,rows,architecture", [
    (2, 128, 2, 3, {}), (3, 192, 3, 2, {}), (2, 256, 4, 2, {}),
    (2, 256, 4, 2, dict(NANOCHAT_2026, layer_types=None)),  # 2026 parts (sliding windows: CPU SDPA keeps more)
])
def test_activation_estimate_is_what_autograd_keeps(depth, width, heads, rows, architecture):
    config = HansardGPTConfig(depth=depth, aspect_ratio=width // depth, head_dim=width // heads, vocab_size=300,
                              max_position_embeddings=160, **architecture)
    assert (config.hidden_size, config.num_attention_heads) == (width, heads)
    model = HansardGPTForCausalLM(config).train()
    ids = torch.randint(0, 300, (rows, 160), generator=torch.Generator().manual_seed(0))
    measured, estimate = kept_for_backward(model, ids), activation_bytes(config, ids.numel())
    assert measured == pytest.approx(estimate, rel=0.01), (measured, estimate)


def test_checkpointed_layers_keep_only_their_input():
    config = HansardGPTConfig(depth=4, aspect_ratio=32, head_dim=64, vocab_size=300, max_position_embeddings=160)
    model = HansardGPTForCausalLM(config).train()
    ids = torch.randint(0, 300, (2, 160), generator=torch.Generator().manual_seed(0))
    model.activation_checkpointing_enable(every_n_layers=2)  # layers 0 and 2
    assert [layer.gradient_checkpointing for layer in model.model.layers] == [True, False, True, False]
    assert checkpointed_layers(4, 2) == 2
    # saved-tensor hooks see what the kept layers keep and the fp32 input each checkpointed layer keeps
    # (CHECKPOINTED_LAYER_BYTES); during backward one checkpointed layer is whole again
    tokens = ids.numel()
    measured = kept_for_backward(model, ids) + kept_layer_bytes(config) * tokens
    assert measured == pytest.approx(activation_bytes(config, tokens, every_n_layers=2), rel=0.01)


def test_rms_norm_and_relu_squared_linear_gradients_are_exact():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _RMSNorm.apply(t, 1e-6, torch.float64), (x,))
    torch.testing.assert_close(_RMSNorm.apply(x, 1e-6, torch.float64), torch.nn.functional.rms_norm(x, (8,), eps=1e-6))
    u = torch.randn(3, 5, 16, dtype=torch.float64, generator=generator, requires_grad=True)
    w = torch.randn(8, 16, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(_ReluSquaredLinear.apply, (u, w))


def test_memory_saving_functions_match_plain_autograd_under_bf16_autocast():
    generator = torch.Generator().manual_seed(1)
    u = torch.randn(4, 32, 64, generator=generator, requires_grad=True)
    w = torch.randn(16, 64, generator=generator, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _ReluSquaredLinear.apply(u.bfloat16(), w)
        plain = torch.nn.functional.linear(torch.relu(u.bfloat16()).square(), w)
    assert ours.dtype == plain.dtype == torch.bfloat16
    torch.testing.assert_close(ours, plain)
    grads = [torch.autograd.grad(out.float().square().sum(), (u, w)) for out in (ours, plain)]
    for a, b in zip(*grads):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-2, atol=1e-2)


def test_checkpointing_to_fit_takes_the_least_checkpointing_that_fits():
    config = Recipe.load(RECIPES / "d36.json").model_config()
    assert checkpointing_to_fit(config, 8, 2048, 85e9) == 0  # everything fits
    every = checkpointing_to_fit(config, 32, 2048, 85e9)
    assert every == 2 and training_bytes(config, 32, 2048, every) <= MEMORY_FRACTION * 85e9
    assert training_bytes(config, 32, 2048, every + 1) > MEMORY_FRACTION * 85e9  # fewer checkpointed layers: over
    assert checkpointing_to_fit(config, 4096, 2048, 85e9) is None


def test_only_the_deep_recipes_checkpoint_on_an_80gb_gpu():
    """At the seed's micro-batches under 8-GPU DDP (32, 32, 32, 16 rows of 2048) and on one GPU (64, 64, 32, 16), on
    an H100 80GB (85.0e9 bytes as CUDA reports it)."""
    chosen = {}
    for depth in (16, 24, 36, 48):
        recipe = Recipe.load(RECIPES / f"d{depth}.json")
        chosen[depth] = [plan(recipe, gpus=gpus, gpu_memory_gb=85).memory[Layout.DDP].every_n_layers for gpus in (8, 1)]
    assert chosen == {16: [0, 0], 24: [0, 3], 36: [2, 2], 48: [2, 2]}


def test_trainer_checkpoints_to_fit_and_trains_identically(tmp_path):
    """Given a memory that only full checkpointing fits, the Trainer checkpoints every layer (arguments and model
    agree) and the losses are those of the run without checkpointing: recomputation changes no arithmetic."""
    config = tiny_config(num_hidden_layers=None, depth=3)
    losses = {}
    for checkpointing in (False, True):
        model = randomized(HansardGPTForCausalLM(config))
        args = tiny_arguments(tmp_path / str(checkpointing), total_batch_size=2 * 16, max_steps=3)
        args.resolve(model.config)
        if checkpointing:
            assert checkpoint_to_fit(model, args, training_bytes(config, 2, 16, 1) / MEMORY_FRACTION) == 1
            assert args.activation_checkpointing and args.activation_checkpointing_kwargs == {"every_n_layers": 1}
            assert [layer.gradient_checkpointing for layer in model.model.layers] == [True] * 3
        else:
            assert checkpoint_to_fit(model, args, 80e9) == 0 and not args.activation_checkpointing
        trainer = HansardTrainer(model=model, args=args, train_dataset=PackedRows(16, 16, config.vocab_size))
        trainer.train()
        losses[checkpointing] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses[True]) == 3 and losses[True] == pytest.approx(losses[False], rel=1e-6)


@pytest.mark.slow
def test_compiled_bf16_training_with_checkpointing_matches_eager():
    """What a deep recipe runs on a GPU (torch.compile, bf16 autocast, every 2nd layer checkpointed), on the CPU."""
    model = randomized(HansardGPTForCausalLM(tiny_config(num_hidden_layers=None, depth=4))).train()
    model.activation_checkpointing_enable(every_n_layers=2)
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    grads = []
    for run in (model, torch.compile(model, dynamic=False)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = run(input_ids=ids, shift_labels=ids).loss
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        model.zero_grad()
    for eager, compiled in zip(*grads):
        torch.testing.assert_close(compiled, eager, atol=2e-2, rtol=5e-2)


def test_the_memory_lean_mlp_steps_aside_for_hooks_adapters_and_inference():
    """The fused relu^2 path would skip fc2's own forward: it is used only for a bare nn.Linear while training."""
    mlp = randomized(HansardGPTForCausalLM(tiny_config())).model.layers[0].mlp
    x = torch.randn(2, 5, mlp.fc1.in_features, generator=torch.Generator().manual_seed(0))
    plain = mlp.fc2(torch.relu(mlp.fc1(x)).square())
    assert mlp._plain_fc2() and torch.allclose(mlp(x), plain)
    handle = mlp.fc2.register_forward_hook(lambda module, inputs, output: output * 0)
    assert not mlp._plain_fc2() and mlp(x).abs().max() == 0  # the hook ran
    handle.remove()
    with torch.no_grad():
        assert torch.allclose(mlp(x), plain)

"""HansardTrainer: same losses as a plain PyTorch loop, exact resume, bits per byte, throughput logs."""

import math

import pytest
import torch
import torch.nn.functional as F

from hansard_hf import HansardGPTForCausalLM
from hansard_hf.budget import peak_flops
from hansard_hf.memory import fit_to_memory
from hansard_hf.presets import NANOCHAT_2026_TRAINING
from hansard_hf import HansardTrainer, HansardTrainingArguments
from conftest import tiny_config
from trainer_helpers import SEQ, PackedRows, losses, plain_loop, tiny_arguments



def arguments(tmp_path, **overrides) -> HansardTrainingArguments:
    return tiny_arguments(tmp_path / "run", **overrides)


def fresh_model(seed=0) -> HansardGPTForCausalLM:
    torch.manual_seed(seed)
    return HansardGPTForCausalLM(tiny_config())


def train_losses(trainer) -> list[float]:
    return list(losses(trainer).values())


# nanochat 2026's optimizer (the preset's settings at depth 12), its warmups and warmdown fitted to 6 steps
NANOCHAT_2026 = {**NANOCHAT_2026_TRAINING, "momentum_warmup_steps": 2, "warmup_steps": 1, "warmdown_ratio": 0.5}


@pytest.mark.parametrize("options", [{}, NANOCHAT_2026], ids=["10231df", "2026"])
def test_trainer_equals_plain_pytorch_loop(tmp_path, options):
    data = PackedRows(48, SEQ, 97)
    args = arguments(tmp_path, **options)
    trainer = HansardTrainer(model=fresh_model(), args=args, train_dataset=data)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 2)
    trainer.train()
    reference_model = fresh_model()
    reference = plain_loop(reference_model, data, args, steps=6)
    assert train_losses(trainer) == pytest.approx(reference, abs=1e-5)
    assert reference[-1] < reference[0] - 0.05  # it learned something
    for a, b in zip(trainer.model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_max_grad_norm_one_is_nanochat_10231df_clipping(tmp_path):
    """nanochat 10231df clips at 1.0 (we default to none, as nanochat does since 061f83c): with max_grad_norm=1.0 the
    Trainer equals that loop, and the clipping really acts here (the default run differs)."""
    data = PackedRows(48, SEQ, 97)
    clipped = HansardTrainer(model=fresh_model(), args=arguments(tmp_path / "a", max_grad_norm=1.0), train_dataset=data)
    clipped.train()
    reference_model = fresh_model()
    reference = plain_loop(reference_model, data, clipped.args, steps=6, grad_clip=1.0)
    assert train_losses(clipped) == pytest.approx(reference, abs=1e-5)
    for a, b in zip(clipped.model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert HansardTrainingArguments.max_grad_norm == 0.0 and "061f83c" in \
        HansardTrainingArguments.__dataclass_fields__["max_grad_norm"].metadata["help"]
    unclipped = plain_loop(fresh_model(), data, clipped.args, steps=6)
    assert max(abs(a - b) for a, b in zip(unclipped, reference)) > 1e-3  # the clip changed the run


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path):
    data = PackedRows(48, SEQ, 97)
    full = HansardTrainer(model=fresh_model(), args=arguments(tmp_path / "a", save_every=3), train_dataset=data)
    full.train()
    checkpoint = tmp_path / "a" / "run" / "checkpoint-3"
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "model.safetensors"} <= {p.name for p in checkpoint.iterdir()}
    resumed = HansardTrainer(model=fresh_model(seed=1), args=arguments(tmp_path / "b"), train_dataset=data)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert len(train_losses(full)) == 6
    assert train_losses(resumed)[-3:] == pytest.approx(train_losses(full)[3:], abs=1e-6)
    assert resumed.optimizer.param_groups[0]["momentum"] == full.optimizer.param_groups[0]["momentum"]
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_eval_bpb_is_nanochats_formula(tmp_path):
    data, held_out = PackedRows(32, SEQ, 97), PackedRows(6, SEQ, 97, seed=9)
    token_bytes = torch.randint(1, 5, (97,))
    token_bytes[:3] = 0  # special tokens: excluded from both sums
    trainer = HansardTrainer(model=fresh_model(), args=arguments(tmp_path, eval_every=2, max_steps=2),
                             train_dataset=data, eval_dataset=held_out, token_bytes=token_bytes)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "eval_bpb" in entry]
    assert len(logged) == 1 and logged[0]["step"] == 2
    model = trainer.model.eval()
    with torch.no_grad():
        logits = model(held_out.rows[:, :-1]).logits
    targets = held_out.rows[:, 1:]
    nats = F.cross_entropy(logits.reshape(-1, 97), targets.reshape(-1), reduction="none")
    nbytes = token_bytes[targets.reshape(-1)]
    expected = (nats * (nbytes > 0)).sum().item() / (math.log(2) * nbytes.sum().item())
    assert logged[0]["eval_bpb"] == pytest.approx(expected, rel=1e-5)
    assert logged[0]["eval_loss"] == pytest.approx(nats.mean().item(), rel=1e-5)


def test_training_logs_carry_throughput_and_schedule(tmp_path):
    trainer = HansardTrainer(model=fresh_model(), args=arguments(tmp_path), train_dataset=PackedRows(48, SEQ, 97))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logs] == [1, 2, 3, 4, 5, 6]
    # warmup over round(0.2 * 6) = 1 step, warmdown over the last round(0.4 * 6) = 2
    assert [entry["lrm"] for entry in logs] == pytest.approx([1.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    assert [entry["learning_rate"] for entry in logs] == pytest.approx([0.02 * e["lrm"] for e in logs])
    for entry in logs:
        assert entry["tokens_per_sec"] == pytest.approx(4 * SEQ / entry["step_time"])
        assert "mfu" not in entry  # no GPU, no peak FLOP/s
    assert trainer.state.total_flos == 6 * 4 * SEQ * tiny_config().flops_per_token(SEQ)


def test_max_steps_defaults_to_the_chinchilla_ratio(tmp_path):
    model = fresh_model()
    args = arguments(tmp_path, max_steps=-1, target_param_data_ratio=0.01, total_batch_size=2 * SEQ)
    HansardTrainer(model=model, args=args, train_dataset=PackedRows(8, SEQ, 97))
    assert args.max_steps == int(0.01 * model.num_parameters() // (2 * SEQ))
    scaling = arguments(tmp_path, max_steps=-1, target_param_data_ratio=0.01, total_batch_size=2 * SEQ,
                        parameter_count="scaling")  # nanochat 2026: block matrices + lm_head
    scaling.resolve(model.config)
    assert scaling.max_steps == int(0.01 * model.config.scaling_parameters() // (2 * SEQ)) < args.max_steps
    with pytest.raises(TypeError, match="needs the model's HansardGPTConfig .* not int: pass model.config"):
        scaling.resolve(model.num_parameters())


def test_peak_flops_by_gpu_name():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("Some Future GPU") is None


def test_auto_micro_batch_halves_on_out_of_memory(tmp_path, caplog):
    """An out-of-memory at 8 rows (injected: a CPU has no such limit) leads to 2 rows x 8 accumulation steps."""
    model = fresh_model()
    forward = type(model).forward

    def limited(self, input_ids=None, **kwargs):
        if input_ids is not None and input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, input_ids=input_ids, **kwargs)

    model.forward = limited.__get__(model)
    args = arguments(tmp_path, device_batch_size=8, total_batch_size=16 * SEQ, max_steps=2, auto_micro_batch=True)
    rows = PackedRows(64, SEQ, 97)
    args.resolve(model.config)
    with caplog.at_level("WARNING"):
        fit_to_memory(model, args, rows)  # where the run is set up, before the Trainer
        trainer = HansardTrainer(model=model, args=args, train_dataset=rows)
    assert "fit_to_memory" not in caplog.text  # fitted: no warning that the automatic choice was skipped
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 8)
    assert "micro-batch lowered to 4 rows" in caplog.text and "micro-batch lowered to 2 rows" in caplog.text
    assert all(p.grad is None for p in trainer.model.parameters())  # the probe leaves no gradients behind
    trainer.train()
    assert trainer.state.global_step == 2


def test_auto_micro_batch_keeps_the_tokens_per_step_with_odd_batches(tmp_path):
    model = fresh_model()
    forward = type(model).forward

    def limited(self, input_ids=None, **kwargs):
        if input_ids is not None and input_ids.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, input_ids=input_ids, **kwargs)

    model.forward = limited.__get__(model)
    args = arguments(tmp_path, device_batch_size=3, total_batch_size=12 * SEQ, max_steps=1, auto_micro_batch=True)
    args.resolve(model.config)
    fit_to_memory(model, args, PackedRows(64, SEQ, 97))
    HansardTrainer(model=model, args=args, train_dataset=PackedRows(64, SEQ, 97))  # resolving again keeps the fit
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (1, 12)  # 3 -> 2 -> 1, 12 rows


def test_a_trainer_built_without_fitting_says_auto_micro_batch_was_not_applied(tmp_path, caplog):
    args = arguments(tmp_path, device_batch_size=4, total_batch_size=8 * SEQ, max_steps=1, auto_micro_batch=True)
    with caplog.at_level("WARNING"):
        HansardTrainer(model=fresh_model(), args=args, train_dataset=PackedRows(64, SEQ, 97))
    assert "applied by hansard_hf.memory.fit_to_memory" in caplog.text and "4 rows per micro-step" in caplog.text
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 2)


def test_an_evaluation_split_smaller_than_a_batch_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="evaluation split has 1 rows, fewer than one evaluation batch"):
        HansardTrainer(model=fresh_model(), args=arguments(tmp_path, eval_every=2), train_dataset=PackedRows(48, SEQ, 97),
                       eval_dataset=PackedRows(1, SEQ, 97))


# The Trainer's private methods HansardTrainer overrides or calls, with their parameters: no public hook wraps the
# writing of a checkpoint or of a model's files (ARCHITECTURE.md, "Private Trainer methods").
PRIVATE_TRAINER_METHODS = {"_save_checkpoint": ["self", "model", "trial"], "_save": ["self", "output_dir", "state_dict"],
                           "_get_output_dir": ["self", "trial"]}


@pytest.mark.parametrize("name", sorted(PRIVATE_TRAINER_METHODS))
def test_the_private_trainer_methods_we_rely_on_are_as_we_know_them(name):
    import inspect

    import transformers
    from transformers import Trainer

    found = getattr(Trainer, name, None)
    parameters = list(inspect.signature(found).parameters) if found else None
    assert parameters == PRIVATE_TRAINER_METHODS[name], (
        f"transformers {transformers.__version__} changed Trainer.{name} (parameters {parameters}, expected "
        f"{PRIVATE_TRAINER_METHODS[name]}): hansard_hf/saving.py overrides or calls it; see ARCHITECTURE.md.")


def test_the_trainer_reaches_our_saving_through_its_private_methods(tmp_path, monkeypatch):
    """A checkpoint and the final model go through CrashSafeSaving's `_save_checkpoint` and `_save`, and DDP's
    gradient buckets are views (through the public `create_accelerator_and_postprocess`)."""
    from hansard_hf.saving import CrashSafeSaving

    calls = []
    for name in ("_save_checkpoint", "_save"):
        method = getattr(CrashSafeSaving, name)
        monkeypatch.setattr(CrashSafeSaving, name, lambda self, *a, _m=method, _n=name, **k: calls.append(_n)
                            or _m(self, *a, **k))
    trainer = HansardTrainer(model=fresh_model(), args=arguments(tmp_path, max_steps=2, save_every=2),
                             train_dataset=PackedRows(48, SEQ, 97))
    trainer.train()
    trainer.save_model()
    assert calls == ["_save_checkpoint", "_save", "_save"], f"the Trainer no longer calls {calls}: see ARCHITECTURE.md"
    assert (tmp_path / "run" / "checkpoint-2" / "checkpoint_complete").exists()
    assert trainer.accelerator.ddp_handler.gradient_as_bucket_view

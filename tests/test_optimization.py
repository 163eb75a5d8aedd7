"""Muon + AdamW in one optimizer, nanochat's schedules and batch arithmetic, checked against torch and formulas."""

import io
import math

import pytest
import torch

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.muon import (POLAR_EXPRESS_COEFFICIENTS, cautious_update, equilibrate_rows, lr_scale, muon_plus, normuon,
                             normuon_state_shape, polar_express, zeropower_via_newtonschulz5)
from hansard_hf.optimization import (MuonAdamW, NanochatSchedule, lr_multiplier, muon_adamw, muon_momentum,
                                     param_groups)
from hansard_hf.budget import batch_plan
from hansard_hf.settings import Budget, Muon, Schedule
from hansard_hf import HansardTrainingArguments
from conftest import tiny_config

SHAPES = [(32, 32), (64, 16), (16, 48)]  # square, tall (fc1-like), wide


def matrices(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator) * 0.1) for shape in SHAPES]


def run(optimizer, params, steps=3, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("steps", [1, 3])
def test_muon_in_bfloat16_equals_torch_optim_muon(steps):
    """Same Newton-Schulz arithmetic in bf16 as torch.optim.Muon: the weights agree to float rounding."""
    ours, theirs, start = matrices(), matrices(), matrices()
    a = run(MuonAdamW([dict(params=ours, lr=0.02, use_muon=True)], momentum=0.95, ns_dtype="bfloat16"), ours, steps)
    b = run(torch.optim.Muon(theirs, lr=0.02, weight_decay=0.0, momentum=0.95, nesterov=True), theirs, steps)
    for x, y, x0 in zip(a, b, start):
        assert (x - x0).abs().max() > 0.005 * steps  # the step really moved the weights (lr 0.02 per step)
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_muon_in_float32_is_within_bfloat16_tolerance_of_torch():
    """fp32 orthogonalisation (our CPU default) differs from torch's bf16 one by bf16 rounding of the update."""
    ours, theirs, start = matrices(), matrices(), matrices()
    a = run(MuonAdamW([dict(params=ours, lr=0.02, use_muon=True)], ns_dtype="float32"), ours, 1)
    b = run(torch.optim.Muon(theirs, lr=0.02, weight_decay=0.0, momentum=0.95), theirs, 1)
    for x, y, x0 in zip(a, b, start):
        update = (y - x0).abs().max()
        assert (x - y).abs().max() < 2**-5 * update  # a few bf16 ulps of the update's scale


def test_newton_schulz_orthogonalises():
    generator = torch.Generator().manual_seed(2)
    for rows, cols in SHAPES:
        k = min(rows, cols)
        u, _ = torch.linalg.qr(torch.randn(rows, k, generator=generator))
        v, _ = torch.linalg.qr(torch.randn(cols, k, generator=generator))
        g = u @ torch.diag(torch.linspace(0.2, 5.0, k)) @ v.T  # singular values spread 25x
        singular = torch.linalg.svdvals(zeropower_via_newtonschulz5(g, dtype=torch.float32))
        assert singular.min() > 0.5 and singular.max() < 1.5, singular  # Keller Jordan's S' ~ U(0.5, 1.5)


def test_muon_lr_scale_follows_rows_over_cols():
    assert lr_scale(torch.Size([256, 64])) == 2.0  # fc1: 4d x d
    assert lr_scale(torch.Size([64, 256])) == 1.0  # fc2
    assert lr_scale(torch.Size([64, 64])) == 1.0


@pytest.mark.parametrize("fused", [True, False])
def test_adamw_groups_equal_torch_adamw(fused):
    """The AdamW groups run torch's own kernel (fused, or foreach): weights equal torch.optim.AdamW's exactly."""
    ours, theirs, start = matrices(3), matrices(3), matrices(3)
    a = run(MuonAdamW([dict(params=ours, lr=0.004, use_muon=False)], adamw_fused=fused), ours, steps=4)
    b = run(torch.optim.AdamW(theirs, lr=0.004, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0, fused=fused,
                              foreach=not fused), theirs, steps=4)
    for x, y, x0 in zip(a, b, start):
        assert (x - x0).abs().max() > 0.01  # four steps of ~lr each
        assert torch.equal(x, y)


def test_loaded_step_counters_are_never_shared():
    """torch's AdamW kernel counts steps in place: a state dict whose parameters share one counter must not count
    it twice after loading."""
    params = matrices(3)[:2]
    optimizer = MuonAdamW([dict(params=params, lr=0.004, use_muon=False)])
    run(optimizer, params, steps=1)
    state = optimizer.state_dict()
    state["state"][1]["step"] = state["state"][0]["step"]
    optimizer.load_state_dict(state)
    run(optimizer, params, steps=1)
    assert [optimizer.state[p]["step"].item() for p in params] == [2.0, 2.0]


def test_adamw_uses_the_fused_kernel_where_torch_has_one():
    assert MuonAdamW([torch.nn.Parameter(torch.ones(2))])._adamw_fused(torch.ones(2))
    assert not MuonAdamW([torch.nn.Parameter(torch.ones(2))], adamw_fused=False)._adamw_fused(torch.ones(2))


def test_param_groups_follow_nanochat():
    model = HansardGPTForCausalLM(tiny_config(depth=3))
    muon, embedding, unembedding = param_groups(model, matrix_lr=0.02, embedding_lr=0.2, unembedding_lr=0.004)
    assert muon["use_muon"] and not embedding["use_muon"] and not unembedding["use_muon"]
    assert len(muon["params"]) == 3 * 6 and all(p.ndim == 2 for p in muon["params"])
    assert embedding["params"][0] is model.model.embed_tokens.weight
    assert unembedding["params"][0] is model.lm_head.weight
    scale = (model.config.hidden_size / 768) ** -0.5
    assert (muon["lr"], embedding["lr"], unembedding["lr"]) == (0.02, pytest.approx(0.2 * scale),
                                                                 pytest.approx(0.004 * scale))
    assert sum(p.numel() for g in (muon, embedding, unembedding) for p in g["params"]) == model.num_parameters()
    with pytest.raises(ValueError, match="attention_bias=False"):
        param_groups(HansardGPTForCausalLM(tiny_config(attention_bias=True)))


def test_state_dict_round_trip_continues_identically():
    model = HansardGPTForCausalLM(tiny_config())
    optimizer = MuonAdamW(param_groups(model))
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(0))

    def step(opt, m):
        m.zero_grad()
        m.train()(ids, labels=ids).loss.backward()
        opt.step()

    for _ in range(2):
        step(optimizer, model)
    clone = HansardGPTForCausalLM(tiny_config())
    clone.load_state_dict(model.state_dict())
    restored = MuonAdamW(param_groups(clone))
    saved = io.BytesIO()
    torch.save(optimizer.state_dict(), saved)  # as the Trainer's optimizer.pt
    restored.load_state_dict(torch.load(io.BytesIO(saved.getvalue())))
    step(optimizer, model)
    step(restored, clone)
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)


def test_lr_multiplier_is_nanochats():
    total = 100  # warmup 5 steps, warmdown the last 20
    values = [lr_multiplier(s, total, warmup_ratio=0.05, warmdown_ratio=0.2, final_lr_frac=0.0) for s in range(101)]
    assert values[:5] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert values[5:81] == [1.0] * 76
    assert values[81] == pytest.approx(19 / 20) and values[90] == pytest.approx(0.5) and values[100] == 0.0
    assert lr_multiplier(90, total, warmdown_ratio=0.2, final_lr_frac=0.1) == pytest.approx(0.55)
    cosine = lr_multiplier(90, total, warmdown_ratio=0.2, shape="cosine")
    assert cosine == pytest.approx(0.5) and lr_multiplier(85, total, shape="cosine") == pytest.approx(
        0.5 * (1 - math.cos(math.pi * 0.75))
    )


def test_muon_momentum_warms_up_over_300_steps():
    assert [muon_momentum(s) for s in (0, 150, 300, 1000)] == [0.85, pytest.approx(0.90), 0.95, 0.95]


def test_schedule_sets_lr_and_momentum_each_step():
    model = HansardGPTForCausalLM(tiny_config())
    optimizer = MuonAdamW(param_groups(model))
    schedule = NanochatSchedule(optimizer, 10, Schedule(warmup_ratio=0.2, warmdown_ratio=0.5, final_lr_frac=0.0,
                                                        momentum_warmup_steps=4))
    seen = []
    for _ in range(10):
        seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"], optimizer.param_groups[0]["momentum"]))
        optimizer.step()  # no gradients: changes nothing
        schedule.step()
    lrm = [lr_multiplier(s, 10, 0.2, 0.5) for s in range(10)]
    emb_lr = 0.2 * (64 / 768) ** -0.5
    for s, (muon_lr, embedding_lr, momentum) in enumerate(seen):
        assert muon_lr == pytest.approx(0.02 * lrm[s]) and embedding_lr == pytest.approx(emb_lr * lrm[s])
        assert momentum == pytest.approx(muon_momentum(s, warmup_steps=4))
    with pytest.raises(ValueError, match="warmdown_shape"):
        Schedule(warmdown_shape="exponential")


@pytest.mark.parametrize(
    "requested, world, expected",
    [(96, 1, (64, 4)), (96, 8, (32, 1)), (64, 8, (32, 1)), (32, 8, (32, 1)), (24, 8, (16, 2)), (24, 1, (16, 16))],
)
def test_batch_plan_picks_the_largest_dividing_micro_batch(requested, world, expected):
    assert batch_plan(524288, requested, 2048, world, strict=False) == expected


def test_batch_plan_errors_name_the_fields():
    with pytest.raises(ValueError, match="device_batch_size=96.*strict"):
        batch_plan(524288, 96, 2048, 8, strict=True)
    with pytest.raises(ValueError, match="total_batch_size=1000.*max_seq_len"):
        batch_plan(1000, 4, 2048, 1, strict=False)


@pytest.mark.parametrize("depth, steps", [(16, 4480), (24, 10320), (36, 27630), (48, 59520)])
def test_max_steps_from_the_chinchilla_ratio(depth, steps, tmp_path):
    args = HansardTrainingArguments(output_dir=str(tmp_path), use_cpu=True, budget=Budget(device_batch_size=32))
    args.resolve(HansardGPTConfig(depth=depth))
    assert args.max_steps == steps
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (32, 8)


def test_training_arguments_drop_the_per_step_host_syncs(tmp_path):
    args = HansardTrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    assert args.max_grad_norm == 0.0 and not args.logging_nan_inf_filter and not args.average_tokens_across_devices
    assert args.ddp_find_unused_parameters is False and args.dataloader_drop_last
    gpu = HansardTrainingArguments(output_dir=str(tmp_path), use_cpu=not torch.cuda.is_available())
    assert gpu.accelerator_config.non_blocking == torch.cuda.is_available()  # pinned batches reach a GPU without a sync
    assert (args.eval_steps, args.save_steps) == (250, 2000)


@pytest.mark.slow
def test_compiled_newton_schulz_equals_eager():
    eager, compiled = matrices(7), matrices(7)
    a = run(MuonAdamW([dict(params=eager, lr=0.02, use_muon=True)], ns_dtype="float32", ns_compile=False), eager, 2)
    b = run(MuonAdamW([dict(params=compiled, lr=0.02, use_muon=True)], ns_dtype="float32", ns_compile=True), compiled, 2)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)


# nanochat's 2026 Muon options (checked against nanochat's own fused step by bench/muon_2026.py: 1e-7)


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (48, 48)])
def test_polar_express_orthogonalises_more_tightly_than_newton_schulz(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    polar, newton = (torch.linalg.svdvals(f(x, 5, torch.float32)) for f in (polar_express, zeropower_via_newtonschulz5))
    assert 0.85 < polar.min() and polar.max() < 1.15  # every singular value near 1 (Newton-Schulz: 0.68 to 1.13)
    assert polar.min() > newton.min()
    # the iteration as the paper writes it, tall matrices multiplied on the right (ours transposes them instead)
    y = equilibrate_rows(x)
    y = y / (y.norm() * 1.01 + 1e-6)
    for a, b, c in POLAR_EXPRESS_COEFFICIENTS:
        if shape[0] > shape[1]:
            gram = y.mT @ y
            y = a * y + y @ (b * gram + c * gram @ gram)
        else:
            gram = y @ y.mT
            y = a * y + (b * gram + c * gram @ gram) @ y
    torch.testing.assert_close(polar_express(x, 5, torch.float32), y, atol=1e-5, rtol=1e-5)


def test_muoneq_gives_every_row_the_mean_row_norm():
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(1)) * torch.arange(1.0, 7.0)[:, None]
    rows = equilibrate_rows(x).norm(dim=-1)
    torch.testing.assert_close(rows, torch.full((6,), x.norm().item() / 6 ** 0.5))


def test_muon_plus_snaps_the_norm_to_that_of_a_semi_orthogonal_matrix():
    for shape in [(8, 3), (3, 8)]:
        assert muon_plus(torch.randn(shape)).norm().item() == pytest.approx(3 ** 0.5, rel=1e-6)


@pytest.mark.parametrize("shape, reduce", [((6, 4), -1), ((4, 6), -2)])
def test_normuon_evens_out_rows_or_columns_and_keeps_the_norm(shape, reduce):
    rows = torch.arange(1.0, shape[0] + 1.0)[:, None]  # rows of very different sizes
    update = torch.randn(shape, generator=torch.Generator().manual_seed(2)) * rows
    second = torch.zeros(normuon_state_shape(torch.Size(shape)))
    assert second.shape == ((6, 1) if reduce == -1 else (1, 6))
    out = normuon(update, second, beta2=0.9)
    torch.testing.assert_close(second, 0.1 * update.square().mean(dim=reduce, keepdim=True))  # first step from zero
    assert out.norm().item() == pytest.approx(update.norm().item(), rel=1e-5)  # the total norm is kept
    norms = out.norm(dim=-1 if reduce == -1 else -2)
    torch.testing.assert_close(norms, torch.full_like(norms, norms.mean().item()))  # every row (column) alike


def test_cautious_weight_decay_decays_only_where_signs_agree():
    weight, update = torch.tensor([1.0, 1.0, -2.0, -2.0]), torch.tensor([0.5, -0.5, 0.5, -0.5])
    cautious_update(weight, update, lr=0.1, weight_decay=0.5)
    # agree (w * u >= 0): w - lr*u - lr*wd*w; disagree: w - lr*u
    torch.testing.assert_close(weight, torch.tensor([1 - 0.05 - 0.05, 1 + 0.05, -2 - 0.05, -2 + 0.05 + 0.1]))


def test_the_2026_options_are_off_by_default_and_change_the_step_when_on():
    def step(**options):
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(16, 8))
        weight.grad = torch.randn(16, 8)
        MuonAdamW([dict(params=[weight], lr=0.02, use_muon=True)], ns_dtype="float32", ns_compile=False,
                  weight_decay=0.1, **options).step()
        return weight.detach()

    plain = step()
    torch.testing.assert_close(plain, step(orthogonalizer="newton_schulz", muon_plus=False, normuon_beta2=None,
                                           cautious_weight_decay=False))
    for option in (dict(orthogonalizer="polar_express"), dict(muon_plus=True), dict(normuon_beta2=0.9),
                   dict(cautious_weight_decay=True)):
        assert (step(**option) - plain).abs().max() > 1e-4, option
    with pytest.raises(ValueError, match="orthogonalizer='svd'"):
        MuonAdamW([torch.nn.Parameter(torch.zeros(2, 2))], orthogonalizer="svd")


def test_a_checkpoint_from_before_the_2026_options_resumes_with_them_off():
    def fresh():
        torch.manual_seed(0)
        weight = torch.nn.Parameter(torch.randn(8, 4))
        return weight, MuonAdamW([dict(params=[weight], lr=0.02, use_muon=True)], ns_dtype="float32", ns_compile=False)

    weight, optimizer = fresh()
    weight.grad = torch.ones(8, 4)
    optimizer.step()
    saved = optimizer.state_dict()
    for group in saved["param_groups"]:  # as an older hansard-hf wrote it
        for key in ("orthogonalizer", "muon_plus", "normuon_beta2", "cautious_weight_decay"):
            del group[key]
    resumed_weight, resumed = fresh()
    schedule = NanochatSchedule(resumed, 10)  # the Trainer builds the schedule before it loads the optimizer
    resumed_weight.data.copy_(weight.data)
    resumed.load_state_dict(saved)
    for w, o in ((weight, optimizer), (resumed_weight, resumed)):
        w.grad = torch.ones(8, 4)
        o.step()
    schedule.step()  # old groups have no initial_weight_decay: their (constant) decay is the base
    torch.testing.assert_close(resumed_weight, weight)
    assert resumed.param_groups[0]["orthogonalizer"] == "newton_schulz"


def test_nanochat_2026_momentum_and_weight_decay_schedules():
    """base_train 92d63d4: momentum 0.85 -> 0.97 over 400 steps, 0.97 until the warmdown (65% of the steps), then
    linear to 0.90; the matrices' weight decay wd * (1 + cos(pi t / T)) / 2."""
    total, warmdown = 1000, 650
    start = total - warmdown

    def nanochat(it):  # get_muon_momentum, restated
        if it < 400:
            return (1 - it / 400) * 0.85 + it / 400 * 0.97
        if it >= start:
            progress = (it - start) / warmdown
            return 0.97 * (1 - progress) + 0.90 * progress
        return 0.97

    weight = torch.nn.Parameter(torch.zeros(4, 4))
    optimizer = MuonAdamW([dict(params=[weight], lr=0.02, use_muon=True, weight_decay=0.28)])
    schedule = NanochatSchedule(optimizer, total, Schedule(
        warmdown_ratio=0.65, final_lr_frac=0.05, momentum_warmup_steps=400, momentum_end=0.97, momentum_final=0.90,
        weight_decay_shape="cosine"), warmup_steps=40)
    for step in range(1, total):
        optimizer.step()
        schedule.step()
        group = optimizer.param_groups[0]
        assert group["momentum"] == pytest.approx(nanochat(step)), step
        assert group["weight_decay"] == pytest.approx(0.28 * 0.5 * (1 + math.cos(math.pi * step / total))), step
    assert schedule.multiplier(0) == pytest.approx(1 / 40) and schedule.multiplier(39) == 1.0  # 40 warmup steps
    assert schedule.multiplier(total - 1) == pytest.approx(1 / 650 + (1 - 1 / 650) * 0.05)
    longer = NanochatSchedule(MuonAdamW([dict(params=[weight], lr=0.02, use_muon=True)]), 2 * total, Schedule(
        warmdown_ratio=0.65, momentum_end=0.97, momentum_final=0.90, weight_decay_shape="cosine"))
    longer.load_state_dict(schedule.state_dict())  # extending a run: its position, its own (longer) warmdown
    assert longer.last_epoch == total - 1 and longer.total_steps == 2 * total
    assert longer.momentum["warmdown_start"] == 2 * total - 1300


def test_the_trainer_builds_the_2026_optimizer_from_its_arguments(tmp_path):
    args = HansardTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", muon=Muon(
        muon_plus=True, muon_orthogonalizer="polar_express", normuon_beta2=0.9, matrix_weight_decay=0.28,
        cautious_weight_decay=True))
    muon, embedding, unembedding = muon_adamw(HansardGPTForCausalLM(tiny_config()), args).param_groups
    assert (muon["orthogonalizer"], muon["muon_plus"], muon["normuon_beta2"], muon["cautious_weight_decay"],
            muon["weight_decay"]) == ("polar_express", True, 0.9, True, 0.28)
    assert embedding["weight_decay"] == unembedding["weight_decay"] == 0.0  # AdamW's groups: none, as nanochat

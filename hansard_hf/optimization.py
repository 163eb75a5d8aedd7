"""nanochat's optimizer set-up as one torch optimizer, plus its LR and momentum schedules.

Muon (matrix_lr, scaled by max(1, rows/cols)^0.5) for every 2-D weight inside the blocks; AdamW (betas 0.8/0.95,
eps 1e-10, no weight decay) for the embedding at embedding_lr and lm_head at unembedding_lr, both scaled by
(hidden_size / 768)^-0.5; nanochat 2026's AdamW groups for its value embeddings and scalars where a model has them. One `torch.optim.Optimizer` holds both kinds of group, as the Trainer, accelerate,
checkpointing and FSDP2 expect (DDP: whole tensors; FSDP2: DTensor shards).
"""

import math

import torch
from torch.distributed.tensor import DTensor, Replicate
from torch.distributed.tensor import zeros as distributed_zeros
from torch.optim.adamw import adamw
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.optimizer import _get_fused_kernels_supported_devices

from .choices import AdamWGroups, Orthogonalizer, check_choice
from .muon import (cautious_update, lr_scale, muon_plus, nesterov_momentum, normuon,
                   normuon_state_shape, orthogonalize, orthogonalize_shards)
from .settings import Muon, Schedule


def second_moment_like(parameter: torch.Tensor) -> torch.Tensor:
    """NorMuon's zero second moment for a matrix: per row (sharded by rows like an FSDP2 parameter) or per column
    (replicated on every rank under FSDP2)."""
    shape = normuon_state_shape(parameter.shape)
    if not isinstance(parameter, DTensor):
        return torch.zeros(shape, dtype=parameter.dtype, device=parameter.device)
    placements = parameter.placements if shape[-1] == 1 else [Replicate()] * len(parameter.placements)
    return distributed_zeros(shape, dtype=parameter.dtype, device_mesh=parameter.device_mesh, placements=placements)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a tensor: a DTensor's local shard (sharing its storage), else the tensor itself."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


# nanochat 92d63d4's AdamW groups (`GPT.setup_optimizer`): (betas, weight decay) for each.
ADAMW_2026 = {
    "embedding": ((0.8, 0.995), 0.001),
    "unembedding": ((0.8, 0.96), 0.01),
    "value_embedding": ((0.8, 0.995), 0.01),
    "resid_lambdas": ((0.8, 0.95), 0.05),
    "x0_lambdas": ((0.96, 0.95), 0.0),
    "smear": ((0.8, 0.95), 0.0),
}
SMEAR_LR = 0.2  # nanochat's smear/backout LR: fixed, not scaled with width or batch


def param_groups(model, matrix_lr=0.02, embedding_lr=0.2, unembedding_lr=0.004, scalar_lr=0.5,
                 adamw_groups="nanochat-2025") -> list[dict]:
    """nanochat's groups for a HansardGPTForCausalLM (or NanoChatForCausalLM): Muon first, the embedding and lm_head
    AdamW groups, then the 2026 parts the model has (value embeddings at half the embedding LR, residual lambdas at
    scalar_lr / 100, x0 lambdas at scalar_lr, smear and backout at 0.2). Each group is named (`name`). The 2026
    parts always take nanochat 2026's betas and decay; `adamw_groups="nanochat-2026"` gives the embedding and lm_head
    theirs too (else the Oct-2025 betas 0.8/0.95 and no decay)."""
    check_choice("adamw_groups", adamw_groups, AdamWGroups)
    scale = (model.config.hidden_size / 768) ** -0.5
    embedding, unembedding = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    lrs = {"value_embedding": embedding_lr * scale * 0.5, "resid_lambdas": scalar_lr * 0.01, "x0_lambdas": scalar_lr,
           "smear": SMEAR_LR}
    named = {"matrices": [], "embedding": [embedding], "unembedding": [unembedding], **{k: [] for k in lrs}}
    other = []
    for name, parameter in model.named_parameters():
        if parameter is embedding or parameter is unembedding:
            continue
        last = name.split(".")[-2] if name.endswith(".weight") else name.split(".")[-1]
        if last == "value_embed":
            named["value_embedding"].append(parameter)
        elif last in ("resid_lambdas", "x0_lambdas"):
            named[last].append(parameter)
        elif last in ("smear_gate", "smear_lambda", "backout_lambda"):
            named["smear"].append(parameter)
        elif parameter.ndim == 2 and ".layers." in f".{name}":
            named["matrices"].append(parameter)
        else:
            other.append(name)
    if other:
        raise ValueError(
            f"No optimizer group for parameters {other}: nanochat's optimizer covers 2-D block weights, the embeddings, "
            "lm_head and the 2026 scalars only (set attention_bias=False)."
        )
    groups = [
        dict(name="matrices", params=named["matrices"], lr=matrix_lr, use_muon=True),
        dict(name="embedding", params=named["embedding"], lr=embedding_lr * scale, use_muon=False),
        dict(name="unembedding", params=named["unembedding"], lr=unembedding_lr * scale, use_muon=False),
    ]
    groups += [dict(name=name, params=named[name], lr=lr, use_muon=False) for name, lr in lrs.items() if named[name]]
    for group in groups[1:]:
        if adamw_groups == "nanochat-2026" or group["name"] not in ("embedding", "unembedding"):
            group["betas"], group["weight_decay"] = ADAMW_2026[group["name"]]
    return groups


class MuonAdamW(torch.optim.Optimizer):
    """Muon for groups with `use_muon=True`, AdamW (torch's update rule) for the others.

    `ns_dtype` is the Newton-Schulz dtype: "auto" is bf16 on CUDA and fp32 elsewhere; `ns_compile` runs it under
    torch.compile ("auto": on CUDA). `adamw_fused` runs torch's fused AdamW kernel ("auto": where torch has one for
    the device, CUDA and CPU included; else its foreach path). `orthogonalized` counts the matrices this process ran
    Newton-Schulz on (under DDP or FSDP2, about 1/world_size of them each step). Under FSDP2 the parameters are
    DTensor shards: AdamW updates each rank's rows; Muon's momentum is kept as a DTensor like its parameter and each
    matrix is orthogonalised whole on one owner rank (`muon.orthogonalize_shards`).

    nanochat's 2026 Muon (92d63d4), each an option that is off by default (per group, or for all groups here):
    `orthogonalizer="polar_express"` (MuonEq row equilibration, then Polar Express instead of Newton-Schulz),
    `muon_plus=True` (Frobenius norm snapped to sqrt(min(rows, cols))), `normuon_beta2=0.9` (NorMuon variance
    reduction with a factored second moment), `cautious_weight_decay=True` (decay at the matrix's LR only where the
    update and the weight agree in sign). All four work in one process, under DDP and under FSDP2 (Muon+ runs where
    the matrix is whole; NorMuon's column sums and norms are summed over the shards, its per-row state is sharded).
    """

    def __init__(self, params, momentum=0.95, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0, ns_steps=5,
                 ns_dtype="auto", ns_compile="auto", adamw_fused="auto", orthogonalizer="newton_schulz",
                 muon_plus=False, normuon_beta2=None, cautious_weight_decay=False):
        check_choice("orthogonalizer", orthogonalizer, Orthogonalizer)
        defaults = dict(use_muon=False, momentum=momentum, nesterov=True, ns_steps=ns_steps, betas=betas, eps=eps,
                        weight_decay=weight_decay, orthogonalizer=orthogonalizer, muon_plus=muon_plus,
                        normuon_beta2=normuon_beta2, cautious_weight_decay=cautious_weight_decay)
        super().__init__(params, defaults)
        self.ns_dtype, self.ns_compile, self.adamw_fused = ns_dtype, ns_compile, adamw_fused
        self.orthogonalized = 0

    def _ns_dtype(self, parameter: torch.Tensor) -> torch.dtype:
        if self.ns_dtype == "auto":
            return torch.bfloat16 if parameter.is_cuda else torch.float32
        return getattr(torch, self.ns_dtype) if isinstance(self.ns_dtype, str) else self.ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            (self._muon_step if group["use_muon"] else self._adamw_step)(group)
        return loss

    def _muon_step(self, group):
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        updates = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:  # a DTensor like the parameter under FSDP2: sharded, saved sharded
                state["momentum_buffer"] = torch.zeros_like(p)
            update = nesterov_momentum(local(p.grad), local(state["momentum_buffer"]), group["momentum"])
            updates.append(update if group["nesterov"] else local(state["momentum_buffer"]))
        compile = params[0].is_cuda if self.ns_compile == "auto" else bool(self.ns_compile)
        dtype, method = self._ns_dtype(params[0]), group["orthogonalizer"]
        finish = muon_plus if group["muon_plus"] else None  # on whole matrices, where they are orthogonalised
        sharded = params[0].device_mesh.get_group() if isinstance(params[0], DTensor) else None
        if sharded is not None:  # FSDP2: each matrix assembled whole on one owner rank
            orthogonal, done = orthogonalize_shards(updates, [p.shape for p in params], group["ns_steps"], dtype,
                                                    compile, sharded, method, finish)
        else:
            orthogonal, done = orthogonalize(updates, group["ns_steps"], dtype, compile, method, finish)
        self.orthogonalized += done
        for p, o in zip(params, orthogonal):
            o, weight, lr = o.to(p.dtype), local(p), group["lr"] * lr_scale(p.shape)  # p.shape: the whole matrix's
            if group["normuon_beta2"] is not None:
                state = self.state[p]
                if "second_moment" not in state:
                    state["second_moment"] = second_moment_like(p)
                o = normuon(o, local(state["second_moment"]), group["normuon_beta2"], sharded, p.shape[0])
            if group["cautious_weight_decay"]:  # nanochat 2026: decay at the matrix's LR, where signs agree
                cautious_update(weight, o, lr, group["weight_decay"])
                continue
            if group["weight_decay"]:
                weight.mul_(1 - group["lr"] * group["weight_decay"])
            weight.add_(o, alpha=-lr)

    def _adamw_step(self, group):
        """torch's AdamW update for the group: one fused kernel where torch has it for the device, else foreach.
        Elementwise, so under FSDP2 it runs on each rank's shards of the parameters, gradients and moments."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for p in params:
            state = self.state[p]
            if not state:  # the step count lives beside the parameter as float32, as torch's fused AdamW wants
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        states = [self.state[p] for p in params]
        fused = self._adamw_fused(params[0])
        beta1, beta2 = group["betas"]
        adamw([local(p) for p in params], [local(p.grad) for p in params], [local(s["exp_avg"]) for s in states],
              [local(s["exp_avg_sq"]) for s in states], [], [s["step"] for s in states], foreach=not fused,
              fused=fused, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
              weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # a checkpoint from before an option existed: the option's default (off)
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        for p, state in self.state.items():  # each its own counter beside its parameter (the kernel counts in place)
            if "step" in state:
                state["step"] = state["step"].to(p.device, torch.float32, copy=True)

    def _adamw_fused(self, parameter: torch.Tensor) -> bool:
        if self.adamw_fused == "auto":
            return parameter.device.type in _get_fused_kernels_supported_devices() and parameter.is_floating_point()
        return bool(self.adamw_fused)


def muon_adamw(model, args) -> MuonAdamW:
    """MuonAdamW over nanochat's groups of `model`, configured by HansardTrainingArguments `args` (`args.muon`,
    `args.adamw`: the Trainer's optimizer; the plain-loop references build theirs here too)."""
    muon, adamw_settings = args.muon, args.adamw
    groups = param_groups(model, muon.matrix_lr, adamw_settings.embedding_lr, adamw_settings.unembedding_lr,
                          adamw_settings.scalar_lr, adamw_settings.adamw_groups)
    groups[0]["weight_decay"] = muon.matrix_weight_decay  # the Muon group; AdamW's decay is per group (nanochat)
    compile = "auto" if muon.muon_compile is None else muon.muon_compile
    return MuonAdamW(groups, ns_dtype=muon.muon_ns_dtype, ns_compile=compile, **muon_options(muon))


def muon_options(muon: Muon) -> dict:
    """MuonAdamW's Muon options from the Muon settings of the same meaning."""
    return dict(orthogonalizer=muon.muon_orthogonalizer, muon_plus=muon.muon_plus, normuon_beta2=muon.normuon_beta2,
                cautious_weight_decay=muon.cautious_weight_decay)


def nanochat_schedule(optimizer, total_steps: int, args) -> "NanochatSchedule":
    """The schedule HansardTrainingArguments `args` describe (`args.schedule`; transformers' warmup_steps counts
    when >= 1)."""
    return NanochatSchedule(optimizer, total_steps, args.schedule,
                            int(args.warmup_steps) if args.warmup_steps >= 1 else None)


def lr_multiplier(step, total_steps, warmup_ratio=0.0, warmdown_ratio=0.2, final_lr_frac=0.0, shape="linear",
                  warmup_steps=None):
    """nanochat's LR multiplier: linear warmup (`warmup_steps`, else warmup_ratio of the steps), constant, then a
    warmdown to final_lr_frac over the last steps."""
    warmup = warmup_steps if warmup_steps else round(warmup_ratio * total_steps)
    warmdown = round(warmdown_ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if warmdown == 0 or step <= total_steps - warmdown:
        return 1.0
    progress = max(total_steps - step, 0) / warmdown  # 1 at the start of the warmdown, 0 at the end
    if shape == "cosine":
        progress = 0.5 * (1 - math.cos(math.pi * progress))
    return progress + (1 - progress) * final_lr_frac


def muon_momentum(step, start=0.85, end=0.95, warmup_steps=300, final=None, warmdown_start=0, warmdown_steps=0):
    """nanochat's Muon momentum: linear from `start` to `end` over the first `warmup_steps` steps; with `final`
    (nanochat 2026: 0.85 -> 0.97, then 0.90), linear from `end` to `final` across the LR warmdown."""
    if step < warmup_steps or final is None or warmdown_steps == 0 or step < warmdown_start:
        fraction = min(step / warmup_steps, 1.0) if warmup_steps > 0 else 1.0
        return (1 - fraction) * start + fraction * end
    progress = (step - warmdown_start) / warmdown_steps
    return (1 - progress) * end + progress * final


def weight_decay_multiplier(step, total_steps, shape="constant") -> float:
    """The Muon weight decay's multiplier: 1 throughout, or nanochat 2026's cosine to 0, (1 + cos(pi step/total)) / 2."""
    return 1.0 if shape == "constant" else 0.5 * (1 + math.cos(math.pi * step / total_steps))


class NanochatSchedule(LambdaLR):
    """Sets every group's lr to initial_lr x lr_multiplier(step), and the Muon groups' momentum and weight decay,
    once per step, as `schedule` describes (`warmup_steps`, when given, instead of its warmup_ratio)."""

    def __init__(self, optimizer, total_steps: int, schedule: Schedule = Schedule(), warmup_steps: int | None = None):
        s = schedule
        warmdown = round(s.warmdown_ratio * total_steps)
        self.momentum = dict(end=s.momentum_end, warmup_steps=s.momentum_warmup_steps, final=s.momentum_final,
                             warmdown_start=total_steps - warmdown, warmdown_steps=warmdown)
        self.total_steps, self.weight_decay_shape = total_steps, s.weight_decay_shape
        for group in optimizer.param_groups:
            group.setdefault("initial_weight_decay", group["weight_decay"])
        super().__init__(optimizer, lambda step: lr_multiplier(step, total_steps, s.warmup_ratio, s.warmdown_ratio,
                                                               s.final_lr_frac, s.warmdown_shape, warmup_steps))

    def step(self, epoch=None):
        super().step(epoch)
        decay = weight_decay_multiplier(self.last_epoch, self.total_steps, self.weight_decay_shape)
        for group in self.optimizer.param_groups:
            if group.get("use_muon"):
                group["momentum"] = muon_momentum(self.last_epoch, **self.momentum)
                # (groups loaded from a checkpoint older than the decay schedule: their decay never moved)
                group["weight_decay"] = group.setdefault("initial_weight_decay", group["weight_decay"]) * decay

    def state_dict(self):
        """The position, not the configuration: a resumed run with more steps keeps its own warmdown and decay."""
        configuration = ("momentum", "total_steps", "weight_decay_shape")
        return {k: v for k, v in super().state_dict().items() if k not in configuration}

    def multiplier(self, step: int | None = None) -> float:
        """The LR multiplier of optimizer step `step` (0-based; default: the next step)."""
        return self.lr_lambdas[0](self.last_epoch if step is None else step)

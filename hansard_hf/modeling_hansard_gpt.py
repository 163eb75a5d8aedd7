"""HansardGPT: nanochat's GPT (Oct-Dec 2025) as a transformers v5 model.

Self-contained (imports only torch, transformers and the config beside it) so that `save_pretrained` ships it to
the Hub and `trust_remote_code=True` loads it without hansard_hf installed. Weight names are those of transformers'
`NanoChatForCausalLM`, so export to the native class is a state-dict copy.

Block: pre-norm with weightless RMSNorm; a norm after the token embedding and before the head; attention with
separate q/k/v/o projections, RoPE (nanochat's sign) then weightless QK-norm; MLP fc1 -> relu(x)^2 -> fc2; untied
embedding and lm_head; logits soft-capped `cap * tanh(logits / cap)` in fp32.

nanochat's 2026 architecture (92d63d4), each part a config option that is off by default: sliding-window layers
(`layer_types`, `sliding_window`), value embeddings gated per KV head (`self_attn.value_embed`, `value_gate`),
per-layer residual and x0 lambdas, the smear gate, the backout, a gain on q and k after QK-norm, its initialisation.
"""

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel, slice_logits_to_keep

from .configuration_hansard_gpt import SMEAR_CHANNELS, VALUE_GATE_CHANNELS, HansardGPTConfig

MASKS = {"full_attention": create_causal_mask, "sliding_attention": create_sliding_window_causal_mask}

# The transformers releases this file is tested on: the oldest hansard-hf admits (.ci/oldest.txt) and the newest
# (requirements-lock.txt). A model card quotes them.
TESTED_TRANSFORMERS = ("5.23.0", "5.25.0")

# transformers 5.24 renamed the KV cache from `past_key_values` to `cache` (arguments and output fields). This file
# runs on both sides of the rename: forwards take either name, outputs use the installed release's field.
CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def accepts_past_key_values(forward):
    """Let `forward(cache=...)` also be called as `forward(past_key_values=...)` (transformers <= 5.23)."""

    @functools.wraps(forward)
    def bridged(self, *args, **kwargs):
        past_key_values = kwargs.pop("past_key_values", None)
        if past_key_values is not None:
            if kwargs.get("cache") is not None:
                raise ValueError("Pass the KV cache once, as `cache` (or its old name `past_key_values`), not both.")
            kwargs["cache"] = past_key_values
        return forward(self, *args, **kwargs)

    return bridged


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matmuls on `x` run in: autocast's when it is on (bf16), else x's own."""
    return torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype


class _RMSNorm(torch.autograd.Function):
    """Weightless RMSNorm in fp32 that keeps for backward only x (in its own dtype) and the fp32 1/rms per row,
    on every device (torch's composite rms_norm keeps an fp32 copy of a bf16 input)."""

    @staticmethod
    def forward(ctx, x, eps, dtype):
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))
        rstd = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, rstd)
        y = x32 * rstd
        return y if y.dtype == dtype else y.to(dtype)  # torch.compile of torch 2.11 cuts an output made by a .to()
        # that changes nothing off from its backward: every gradient came out zero (2.13 is right)

    @staticmethod
    def backward(ctx, grad):
        x, rstd = ctx.saved_tensors
        x32, grad32 = x.to(rstd.dtype), grad.to(rstd.dtype)
        y = x32 * rstd
        return (rstd * (grad32 - y * (grad32 * y).mean(-1, keepdim=True))).to(x.dtype), None, None


def rms_norm(x: torch.Tensor, eps: float, dtype: torch.dtype | None = None) -> torch.Tensor:
    """RMSNorm without a learnable weight, computed in fp32, returned in `dtype` (default: x's)."""
    return _RMSNorm.apply(x, eps, dtype or x.dtype)


class _ReluSquaredLinear(torch.autograd.Function):
    """`relu(u)^2 @ weight.T` that keeps only u for backward and recomputes relu(u)^2 there (one elementwise pass)
    instead of keeping both relu(u) and its square: 8 of the 16 bytes per token and hidden unit of an MLP."""

    @staticmethod
    def forward(ctx, u, weight):
        ctx.save_for_backward(u, weight)
        relu = F.relu(u)
        return (relu * relu) @ weight.to(u.dtype).T  # r * r, not square(): CUDA autocast would run pow in fp32

    @staticmethod
    def backward(ctx, grad):
        u, weight = ctx.saved_tensors
        relu = F.relu(u)
        grad = grad.to(u.dtype)
        grad_u = (grad @ weight.to(u.dtype)) * (2 * relu) if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad.flatten(0, -2).T @ (relu * relu).flatten(0, -2)).to(weight.dtype)
        return grad_u, grad_weight


class HansardGPTRotaryEmbedding(nn.Module):
    """RoPE frequencies (half-split layout); cos/sin are computed per call from `position_ids`."""

    inv_freq: torch.Tensor

    def __init__(self, config: HansardGPTConfig):
        super().__init__()
        self.config = config
        self.register_buffer("inv_freq", self.compute_inv_freq(config), persistent=False)

    @staticmethod
    def compute_inv_freq(config: HansardGPTConfig, device=None) -> torch.Tensor:
        base, dim = config.rope_parameters["rope_theta"], config.head_dim
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float, device=device) / dim))

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        dtype = compute_dtype(x)  # under autocast q and k stay bf16 through RoPE, as in nanochat
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """nanochat's rotation sign: (x1, x2) -> (x2, -x1)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x2, -x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(batch, kv_heads, seq, dim) -> (batch, kv_heads * n_rep, seq, dim)."""
    if n_rep == 1:
        return hidden_states
    batch, kv_heads, seq, dim = hidden_states.shape
    hidden_states = hidden_states[:, :, None].expand(batch, kv_heads, n_rep, seq, dim)
    return hidden_states.reshape(batch, kv_heads * n_rep, seq, dim)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key, value = repeat_kv(key, module.num_key_value_groups), repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class HansardGPTAttention(nn.Module):
    def __init__(self, config: HansardGPTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        q_dim, kv_dim = config.num_attention_heads * self.head_dim, config.num_key_value_heads * self.head_dim
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, q_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, kv_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, kv_dim, bias=bias)
        self.o_proj = nn.Linear(q_dim, config.hidden_size, bias=bias)
        sliding = config.attention_types()[layer_idx] == "sliding_attention"
        self.sliding_window = config.sliding_window if sliding else None
        self.value_embed = self.value_gate = None
        if layer_idx in config.value_embedding_layers():
            self.value_embed = nn.Embedding(config.vocab_size, kv_dim)
            self.value_gate = nn.Linear(VALUE_GATE_CHANNELS, config.num_key_value_heads, bias=False)

    def forward(self, hidden_states, position_embeddings, attention_mask=None, cache=None, input_ids=None, **kwargs):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape)
        if self.value_embed is not None:  # ResFormer value residual, gated per KV head in (0, 3)
            if input_ids is None:
                raise ValueError("This model has value embeddings (config.value_embeddings): pass input_ids.")
            gate = 3 * torch.sigmoid(self.value_gate(hidden_states[..., :VALUE_GATE_CHANNELS]))
            value = value + gate.unsqueeze(-1) * self.value_embed(input_ids).view(hidden_shape).to(value.dtype)
        value = value.transpose(1, 2)

        query, key = apply_rotary_pos_emb(query, key, *position_embeddings)
        eps = self.config.rms_norm_eps
        query, key = rms_norm(query, eps), rms_norm(key, eps)  # QK-norm after RoPE, as nanochat
        if self.config.qk_gain != 1.0:
            query, key = query * self.config.qk_gain, key * self.config.qk_gain
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.config.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            sliding_window=self.sliding_window,
            **kwargs,
        )
        return self.o_proj(attn_output.reshape(*input_shape, -1).contiguous()), attn_weights


class HansardGPTMLP(nn.Module):
    def __init__(self, config: HansardGPTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]
        self.relu_squared = config.hidden_act == "relu2"

    def forward(self, x):
        if self.relu_squared and torch.is_grad_enabled() and self._plain_fc2():  # half the activation memory
            return _ReluSquaredLinear.apply(self.fc1(x), self.fc2.weight)
        return self.fc2(self.act_fn(self.fc1(x)))

    def _plain_fc2(self) -> bool:
        """fc2 is a bare nn.Linear (no adapter, quantised layer or hook whose forward the fused path would skip)."""
        fc2 = self.fc2
        return type(fc2) is nn.Linear and not (fc2._forward_hooks or fc2._forward_pre_hooks or hasattr(fc2, "_hf_hook"))


class HansardGPTDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: HansardGPTConfig, layer_idx: int):
        super().__init__()
        self.eps = config.rms_norm_eps
        self.self_attn = HansardGPTAttention(config, layer_idx)
        self.mlp = HansardGPTMLP(config)

    @accepts_past_key_values
    def forward(self, hidden_states, position_embeddings, attention_mask=None, cache=None, **kwargs):
        # the residual stream stays fp32; each branch gets its normed input once in the matmul dtype (under autocast
        # q, k and v share one bf16 copy instead of casting it three times)
        dtype = compute_dtype(hidden_states)
        attn_output, _ = self.self_attn(
            rms_norm(hidden_states, self.eps, dtype), position_embeddings, attention_mask, cache, **kwargs
        )
        hidden_states = hidden_states + attn_output
        return hidden_states + self.mlp(rms_norm(hidden_states, self.eps, dtype))


class HansardGPTPreTrainedModel(PreTrainedModel):
    config_class = HansardGPTConfig
    config: HansardGPTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["HansardGPTDecoderLayer"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module):
        """nanochat's init_weights (`config.initialization`), a line per kind of tensor. transformers calls this for
        each module that holds tensors and skips tensors loaded from a checkpoint; the module's name says its kind.
        Rotary frequencies are recomputed because from_pretrained leaves non-persistent buffers uninitialised."""
        c, kind = self.config, self._kind(module)
        new, s = c.initialization == "nanochat-2026", math.sqrt(3 / c.hidden_size)  # s: 2026's uniform bound

        def matrix(weight, narrow: float = 1.0):  # 2026: U(+-narrow s); Oct 2025: N(0, min(1, sqrt(out/in))/sqrt(in))
            fan_out, fan_in = weight.shape
            if new:
                init.uniform_(weight, -narrow * s, narrow * s)
            else:
                init.normal_(weight, std=min(1.0, math.sqrt(fan_out / fan_in)) / math.sqrt(fan_in))

        if kind in ("q_proj", "k_proj", "v_proj"):
            matrix(module.weight)
        elif kind == "fc1":
            matrix(module.weight, narrow=0.4)
        elif kind in ("o_proj", "fc2"):
            init.zeros_(module.weight)
        elif kind == "lm_head":
            init.normal_(module.weight, std=0.001) if new else init.zeros_(module.weight)
        elif kind == "embed_tokens" or (not kind and isinstance(module, nn.Embedding)):  # a resized embedding too
            init.normal_(module.weight, std=0.8 if new else 1.0)
        elif kind == "value_embed":
            init.uniform_(module.weight, -s, s)
        elif kind in ("value_gate", "smear_gate"):
            init.uniform_(module.weight, 0.0, 0.02)
        elif isinstance(module, HansardGPTModel):
            depth = torch.arange(c.num_hidden_layers) / max(c.num_hidden_layers - 1, 1)
            if module.resid_lambdas is not None:
                init.copy_(module.resid_lambdas, 1.15 - 0.10 * depth)
                init.copy_(module.x0_lambdas, 0.20 - 0.15 * depth)
            if module.smear_lambda is not None:
                init.zeros_(module.smear_lambda)
            if module.backout_lambda is not None:
                init.constant_(module.backout_lambda, 0.2)
        elif isinstance(module, HansardGPTRotaryEmbedding):
            init.copy_(module.inv_freq, module.compute_inv_freq(module.config, module.inv_freq.device))
        elif isinstance(module, nn.Linear):  # a resized lm_head, before it takes its place
            matrix(module.weight)
        if isinstance(module, nn.Linear) and module.bias is not None:
            init.zeros_(module.bias)

    def _kind(self, module: nn.Module) -> str:
        """The last part of a submodule's name (its state dict prefix; "" for one outside this model)."""
        names = self.__dict__.get("_names_for_init") or {}
        if module not in names:  # a plain attribute (not a submodule), rebuilt when the modules change
            names = self.__dict__["_names_for_init"] = {m: name for name, m in self.named_modules()}
        return names.get(module, "").rsplit(".", 1)[-1]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual, with an `auto_map` for AutoConfig, AutoModel and AutoModelForCausalLM so the folder
        loads with `trust_remote_code=True` through either Auto class. A model FSDP2 shards saves as its own class:
        `fully_shard` gives it a class made at run time (`FSDP<name>`, in torch's files), whose files save_pretrained
        would otherwise copy in place of this one."""
        from torch.distributed.fsdp import FSDPModule

        sharded_class = type(self)
        if isinstance(self, FSDPModule):
            self.__class__ = next(base for base in sharded_class.__bases__ if base is not FSDPModule)
        try:
            module = type(self).__module__.rsplit(".", 1)[-1]
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": f"{module}.HansardGPTModel",
                "AutoModelForCausalLM": f"{module}.HansardGPTForCausalLM",
            }
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.__class__ = sharded_class

    def floating_point_ops(self, input_dict, exclude_embeddings: bool = True) -> int:
        """Training FLOPs of one batch by nanochat's estimate (the Trainer's `total_flos`)."""
        batch, seq_len = input_dict[self.main_input_name].shape[:2]
        return self.config.flops_per_token(seq_len) * batch * seq_len


class HansardGPTModel(HansardGPTPreTrainedModel):
    def __init__(self, config: HansardGPTConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(HansardGPTDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.rotary_emb = HansardGPTRotaryEmbedding(config)
        self.gradient_checkpointing = False
        layers = config.num_hidden_layers
        self.resid_lambdas = nn.Parameter(torch.ones(layers)) if config.residual_lambdas else None
        self.x0_lambdas = nn.Parameter(torch.zeros(layers)) if config.residual_lambdas else None
        self.smear_gate = nn.Linear(SMEAR_CHANNELS, 1, bias=False) if config.smear else None
        self.smear_lambda = nn.Parameter(torch.zeros(1)) if config.smear else None
        self.backout_lambda = nn.Parameter(torch.full((1,), 0.2)) if config.backout else None
        self.post_init()

    @accepts_past_key_values
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache is None:  # no cache while training: packed documents need a cache-free mask
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        # With no attention_mask and no cache, given position_ids that restart mark packed documents: block-causal
        # mask. Positions made here never restart, and leaving them out spares the mask's packed check a host sync.
        # (the cache goes in by position: its keyword is `past_key_values` up to transformers 5.23, `cache` after)
        layer_types = self.config.attention_types()
        masks = {kind: MASKS[kind](self.config, inputs_embeds, attention_mask, cache, position_ids=position_ids)
                 for kind in set(layer_types)}  # only the kinds the layers use
        document_starts = None if position_ids is None else position_ids == 0  # packed documents, left padding
        if position_ids is None:
            past_seen = cache.get_seq_length() if cache is not None else 0
            position_ids = (torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen).unsqueeze(0)
        position_embeddings = self.rotary_emb(inputs_embeds, position_ids)
        hidden_states = rms_norm(inputs_embeds, self.config.rms_norm_eps)  # norm right after the embedding
        if self.smear_gate is not None:
            hidden_states = self._smear(hidden_states, cache, document_starts)
        embedding, middle = hidden_states, self.config.num_hidden_layers // 2
        for i, layer in enumerate(self.layers):
            if self.resid_lambdas is not None:
                hidden_states = self.resid_lambdas[i] * hidden_states + self.x0_lambdas[i] * embedding
            hidden_states = layer(
                hidden_states,
                position_embeddings=position_embeddings,
                attention_mask=masks[layer_types[i]],
                input_ids=input_ids,
                **{CACHE_FIELD: cache},  # the name transformers' checkpointing layer clears while checkpointing
                **kwargs,
            )
            if i == middle and self.backout_lambda is not None:
                backout = self.backout_lambda * hidden_states
        if self.backout_lambda is not None:  # remove the mid-network residual (low-level features) before the head
            hidden_states = hidden_states - backout
        hidden_states = rms_norm(hidden_states, self.config.rms_norm_eps)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, **{CACHE_FIELD: cache})

    def _smear(self, embedding, cache, document_starts):
        """x[t] += smear_lambda * sigmoid(smear_gate(x[t, :24])) * x[t-1]: the previous token's normed embedding
        (none before a document's first token). A cache keeps every embedding it has seen, read at the cache's
        length, so cropping (assisted decoding) and beam reordering (`_reorder_cache`) keep the previous one right."""
        previous = torch.zeros_like(embedding[:, :1])
        if cache is not None:
            past, seen = cache.get_seq_length(), embedding.detach()
            if past:
                kept = getattr(cache, "smear_embeddings", None)
                if kept is None or kept.shape[0] != embedding.shape[0] or kept.shape[1] < past:
                    raise ValueError(
                        f"The cache holds {past} tokens but not the smear's embeddings of them for this batch of "
                        f"{embedding.shape[0]}: pass a cache this model filled for these rows, or none."
                    )
                previous, seen = kept[:, past - 1: past].to(embedding.dtype), torch.cat([kept[:, :past], seen], 1)
            cache.smear_embeddings = seen
        shifted = torch.cat([previous, embedding[:, :-1]], dim=1)
        if document_starts is not None:
            shifted = shifted * ~document_starts[..., None]
        gate = self.smear_lambda * torch.sigmoid(self.smear_gate(embedding[..., :SMEAR_CHANNELS]))
        return embedding + gate * shifted


def softcap_logits(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """`cap * tanh(logits / cap)` in fp32 (no cap when `cap` is None)."""
    logits = logits.float()
    return logits if cap is None else cap * torch.tanh(logits / cap)


class _ChunkedSoftcapCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `softcap(hidden @ weight.T)` over rows, one chunk of rows at a time (or, with
    `per_token`, each row's, without gradients: what evaluation weighs by token bytes).

    The gradients are computed chunk by chunk during the forward pass (as Liger's fused linear cross-entropy does),
    so at most two `chunk_size x vocab` fp32 buffers exist at once and nothing is recomputed in backward.
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, cap, chunk_size, ignore_index, grad_enabled, per_token=False):
        weight_c = weight.to(hidden.dtype)
        grad_enabled = grad_enabled and not per_token
        grad_hidden = torch.empty_like(hidden) if grad_enabled and ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if grad_enabled and ctx.needs_input_grad[1] else None
        total = []  # the chunks' losses, joined at the end: torch.compile of torch 2.11 cuts the Function's output off
        # from its backward when the forward writes that output in place (every gradient came out zero; 2.13 is right)
        for start in range(0, hidden.shape[0], chunk_size):
            h, y = hidden[start : start + chunk_size], labels[start : start + chunk_size]
            logits = (h @ weight_c.T).float()
            if cap is not None:
                tanh = logits.div_(cap).tanh_()
                logits = tanh * cap
            valid = y != ignore_index
            target = y.masked_fill(~valid, 0)
            lse = torch.logsumexp(logits, dim=-1)
            nats = (lse - logits.gather(1, target[:, None]).squeeze(1)) * valid
            total.append(nats if per_token else nats.sum())
            if grad_hidden is None and grad_weight is None:
                continue
            dlogits = logits.sub_(lse[:, None]).exp_()  # softmax, in place
            dlogits[torch.arange(len(y), device=y.device), target] -= 1.0
            dlogits.mul_(valid[:, None])
            if cap is not None:
                dlogits.mul_(tanh.square_().neg_().add_(1.0))  # d(cap * tanh(x / cap)) / dx = 1 - tanh^2
            dlogits = dlogits.to(h.dtype)
            if grad_hidden is not None:
                grad_hidden[start : start + chunk_size] = dlogits @ weight_c
            if grad_weight is not None:
                grad_weight += (dlogits.T @ h).float()
        ctx.weight_dtype = weight.dtype
        ctx.save_for_backward(grad_hidden, grad_weight)
        return torch.cat(total) if per_token else sum(total)

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_output.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_output).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None, None, None, None, None


def chunked_softcap_cross_entropy(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor | None,
    softcap: float | None,
    chunk_size: int,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
    shift_labels: torch.Tensor | None = None,
    per_token: bool = False,
    **kwargs,
) -> torch.Tensor:
    """The loss of transformers' `ForCausalLMLoss` on soft-capped logits, without materialising the logits.

    Labels are shifted inside (or `shift_labels` given); the sum over target tokens is divided by
    `num_items_in_batch` when the Trainer passes it, else by the number of targets. `per_token`: each target's nats
    instead (0 where ignored; no gradients), in the shape of the targets.
    """
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])
    targets = shift_labels.reshape(-1).to(hidden.device)
    grad_enabled = torch.is_grad_enabled()  # inside the Function it is always off: decide here
    total = _ChunkedSoftcapCrossEntropy.apply(hidden, weight, targets, softcap, chunk_size, ignore_index, grad_enabled,
                                              per_token)
    if per_token:
        return total.view(shift_labels.shape)
    if num_items_in_batch is None:
        return total / (targets != ignore_index).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


class HansardGPTLMHead(nn.Linear):
    """The unembedding. `lm_head(hidden)` gives logits; with `chunk_size > 0`, `lm_head(hidden, labels, softcap,
    chunk_size, **loss_kwargs)` gives `chunked_softcap_cross_entropy` instead. The loss is computed inside this
    module's call so that hooks on lm_head see its weight used: FSDP2 as accelerate (>= 1.14) applies it makes lm_head
    a unit of its own, whose weight is gathered only when lm_head is called."""

    def forward(self, hidden_states, labels=None, softcap=None, chunk_size=0, **loss_kwargs):
        if chunk_size <= 0:
            return super().forward(hidden_states)
        return chunked_softcap_cross_entropy(hidden_states, self.weight, labels, softcap, chunk_size, **loss_kwargs)


class HansardGPTForCausalLM(HansardGPTPreTrainedModel, GenerationMixin):
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: HansardGPTConfig):
        super().__init__(config)
        self.model = HansardGPTModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = HansardGPTLMHead(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @accepts_past_key_values
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """With `labels` (shifted inside) or `shift_labels` (already the next tokens), the loss is the soft-capped
        cross-entropy computed in chunks of `config.loss_chunk_size` tokens (`num_items_in_batch` from the Trainer
        is honoured); in training mode no logits are returned then, so the full fp32 logits never exist."""
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        cap, chunk = self.config.final_logit_softcapping, self.config.loss_chunk_size
        has_targets = labels is not None or kwargs.get("shift_labels") is not None
        loss = logits = None
        if has_targets and chunk > 0:
            loss = self.lm_head(hidden_states, labels, cap, chunk, **kwargs)
        if not has_targets or chunk <= 0 or not self.training:
            logits = softcap_logits(self.lm_head(slice_logits_to_keep(hidden_states, logits_to_keep)), cap)
        if has_targets and loss is None:
            loss = self.loss_function(logits, labels, self.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_FIELD: getattr(outputs, CACHE_FIELD)})

    def set_output_embeddings(self, new_embeddings: nn.Linear):
        """A plain nn.Linear given here (resize_token_embeddings makes one) becomes a HansardGPTLMHead, weights kept."""
        if type(new_embeddings) is nn.Linear:
            new_embeddings.__class__ = HansardGPTLMHead
        self.lm_head = new_embeddings

    def _reorder_cache(self, cache: Cache, beam_idx: torch.LongTensor) -> Cache:
        """Beam search: reorder the cache's rows, and the smear's embeddings with them (`generate` calls this)."""
        cache.reorder_cache(beam_idx)
        seen = getattr(cache, "smear_embeddings", None)
        if seen is not None:
            cache.smear_embeddings = seen.index_select(0, beam_idx.to(seen.device))
        return cache


HansardGPTModel.register_for_auto_class("AutoModel")
HansardGPTForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["HansardGPTPreTrainedModel", "HansardGPTModel", "HansardGPTForCausalLM", "chunked_softcap_cross_entropy"]

"""HansardGPTForCausalLM: parity with transformers' NanoChat, the chunked loss, attention backends, packing, cache."""

import math

import pytest
import torch
from transformers import DynamicCache, NanoChatForCausalLM

from hansard_hf import HansardGPTForCausalLM, load_from_nanochat
from hansard_hf.hub import max_logit_difference, to_nanochat_config
from hansard_hf.modeling_hansard_gpt import CACHE_FIELD, chunked_softcap_cross_entropy, softcap_logits
from conftest import randomized, tiny_config


def native_copy(model: HansardGPTForCausalLM) -> NanoChatForCausalLM:
    native = NanoChatForCausalLM(to_nanochat_config(model.config))
    native.load_state_dict(model.state_dict(), strict=True)
    return native.eval()


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_logits_equal_native_nanochat(kv_heads, input_ids):
    model = randomized(HansardGPTForCausalLM(tiny_config(num_key_value_heads=kv_heads)))
    native = native_copy(model)
    assert max_logit_difference(model, native, input_ids) < 1e-5
    # The softcap is live: |logits| < 15 and some exceed what an uncapped head would give.
    assert model(input_ids).logits.abs().max() < 15.0


def test_native_nanochat_loads_into_hansard(input_ids):
    torch.manual_seed(3)
    native = randomized(NanoChatForCausalLM(to_nanochat_config(tiny_config(num_key_value_heads=2))))
    ours = load_from_nanochat(native)
    assert isinstance(ours, HansardGPTForCausalLM)
    assert ours.config.num_key_value_heads == 2
    assert max_logit_difference(ours, native, input_ids) < 1e-5


def naive_loss(model, input_ids, labels, **kwargs):
    logits = softcap_logits(model.lm_head(model.model(input_ids, use_cache=False).last_hidden_state), 15.0)
    return model.loss_function(logits, labels, model.config.vocab_size, **kwargs)


@pytest.mark.parametrize("chunk", [1, 7, 48, 4096])
def test_chunked_loss_equals_naive_loss_and_gradients(tiny_model, input_ids, chunk):
    labels = input_ids.clone()
    labels[0, :5] = -100  # ignored targets
    model = tiny_model.train()
    model.config.loss_chunk_size = chunk
    out = model(input_ids, labels=labels)
    assert out.logits is None  # training mode: the full logits never exist
    out.loss.backward()
    chunked = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    reference = naive_loss(model, input_ids, labels)
    reference.backward()
    assert out.loss.item() == pytest.approx(reference.item(), rel=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(chunked[name], p.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_resized_vocabulary_keeps_the_chunked_loss(tiny_model, input_ids):
    """resize_token_embeddings makes lm_head a plain nn.Linear; it becomes a HansardGPTLMHead again (whose call
    computes the chunked loss), with the resized weights."""
    model = tiny_model.train()
    model.resize_token_embeddings(model.config.vocab_size + 8, mean_resizing=False)
    assert type(model.lm_head).__name__ == "HansardGPTLMHead" and model.lm_head.weight.shape[0] == model.config.vocab_size
    chunked = model(input_ids, labels=input_ids).loss
    assert chunked.item() == pytest.approx(naive_loss(model, input_ids, input_ids).item(), rel=1e-6)


def test_num_items_in_batch_divides_the_summed_loss(tiny_model, input_ids):
    tiny_model.train()
    summed = tiny_model(input_ids, labels=input_ids, num_items_in_batch=torch.tensor(1)).loss
    mean = tiny_model(input_ids, labels=input_ids).loss
    targets = input_ids[:, 1:].numel()
    assert summed.item() == pytest.approx(mean.item() * targets, rel=1e-5)
    assert tiny_model(input_ids, labels=input_ids, num_items_in_batch=targets * 3).loss.item() == pytest.approx(
        mean.item() / 3, rel=1e-5
    )
    assert naive_loss(tiny_model, input_ids, input_ids, num_items_in_batch=7).item() == pytest.approx(
        summed.item() / 7, rel=1e-5
    )


def test_loss_chunk_size_zero_uses_loss_function(tiny_model, input_ids):
    tiny_model.config.loss_chunk_size = 0
    out = tiny_model.train()(input_ids, labels=input_ids)
    assert out.logits is not None and out.logits.dtype == torch.float32
    tiny_model.config.loss_chunk_size = 5
    assert tiny_model(input_ids, labels=input_ids).loss.item() == pytest.approx(out.loss.item(), abs=1e-6)


def test_chunked_loss_in_bfloat16_is_close_to_fp32(tiny_model, input_ids):
    hidden = tiny_model.model(input_ids, use_cache=False).last_hidden_state.detach()
    weight = tiny_model.lm_head.weight.detach()
    exact = chunked_softcap_cross_entropy(hidden, weight, input_ids, 15.0, 8)
    low = chunked_softcap_cross_entropy(hidden.bfloat16(), weight.bfloat16(), input_ids, 15.0, 8)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(exact.item(), rel=2e-2)


def test_eager_and_sdpa_agree(tiny_model, input_ids):
    sdpa = tiny_model(input_ids).logits
    tiny_model.config._attn_implementation = "eager"
    eager = tiny_model(input_ids).logits
    assert (sdpa - eager).abs().max() < 1e-5


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_documents_do_not_attend_across_the_boundary(tiny_model, attn):
    tiny_model.config._attn_implementation = attn
    doc_a = torch.randint(0, 97, (1, 9), generator=torch.Generator().manual_seed(5))
    doc_b = torch.randint(0, 97, (1, 7), generator=torch.Generator().manual_seed(6))
    packed = torch.cat([doc_a, doc_b], dim=1)
    positions = torch.cat([torch.arange(9), torch.arange(7)])[None]
    out = tiny_model(packed, position_ids=positions, use_cache=False).logits
    alone_a, alone_b = tiny_model(doc_a).logits, tiny_model(doc_b).logits
    assert (out[:, :9] - alone_a).abs().max() < 1e-5
    assert (out[:, 9:] - alone_b).abs().max() < 1e-5
    # Without restarting positions, doc_b does see doc_a: the check above is not vacuous.
    assert (tiny_model(packed).logits[:, 9:] - alone_b).abs().max() > 1e-2


def test_generate_same_tokens_with_and_without_cache(tiny_model, input_ids):
    prompt = input_ids[:, :6]
    cached = tiny_model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=True)
    uncached = tiny_model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=False)
    assert cached.shape == (2, 18)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("name", ["cache", "past_key_values"])
@torch.no_grad()
def test_kv_cache_is_read_under_either_name(tiny_model, input_ids, name):
    """transformers 5.24 renamed the cache argument `past_key_values` -> `cache`: both names reach the same cache,
    and a step that sees one new token gives the logits of the full sequence's last position."""
    full = tiny_model(input_ids).logits[:, -1]
    prefix = tiny_model(input_ids[:, :-1], use_cache=True)
    cache = getattr(prefix, CACHE_FIELD)
    assert cache.get_seq_length() == input_ids.shape[1] - 1
    step = tiny_model(input_ids[:, -1:], **{name: cache})
    assert cache.get_seq_length() == input_ids.shape[1]
    assert (step.logits[:, -1] - full).abs().max() < 1e-5
    # without the cache the single token sees nothing before it: the check above is not vacuous
    assert (tiny_model(input_ids[:, -1:], use_cache=False).logits[:, -1] - full).abs().max() > 1e-2


def test_cache_under_both_names_is_refused(tiny_model, input_ids):
    cache = DynamicCache(config=tiny_model.config)
    with pytest.raises(ValueError, match="not both"):
        tiny_model(input_ids, cache=cache, past_key_values=cache)


def test_activation_checkpointing_gives_the_same_gradients(tiny_model, input_ids):
    tiny_model.train()
    tiny_model(input_ids, labels=input_ids).loss.backward()
    plain = [p.grad.clone() for p in tiny_model.parameters()]
    tiny_model.zero_grad()
    tiny_model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in tiny_model.model.layers)
    tiny_model(input_ids, labels=input_ids).loss.backward()
    for a, p in zip(plain, tiny_model.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-5)


def test_nanochat_initialisation():
    torch.manual_seed(0)
    config = tiny_config(vocab_size=4000, depth=3)
    model = HansardGPTForCausalLM(config)
    layer = model.model.layers[1]
    d = config.hidden_size
    for zero in (layer.self_attn.o_proj, layer.mlp.fc2, model.lm_head):
        assert torch.count_nonzero(zero.weight) == 0
    assert model.model.embed_tokens.weight.std().item() == pytest.approx(1.0, rel=0.02)
    assert layer.self_attn.q_proj.weight.std().item() == pytest.approx(1 / math.sqrt(d), rel=0.05)
    # fc1 is 4d x d: min(1, sqrt(4d/d)) = 1, so std is 1/sqrt(d) too
    assert layer.mlp.fc1.weight.std().item() == pytest.approx(1 / math.sqrt(d), rel=0.05)
    # a wide matrix (fan_out < fan_in) is scaled down: 1/sqrt(fan_in) * sqrt(fan_out/fan_in)
    wide = HansardGPTForCausalLM(tiny_config(num_key_value_heads=1)).model.layers[0].self_attn.k_proj
    assert wide.weight.std().item() == pytest.approx(math.sqrt(16 / 64) / math.sqrt(64), rel=0.15)
    # untrained: zero lm_head -> uniform next-token distribution
    assert torch.allclose(model(torch.tensor([[1, 2, 3]])).logits, torch.zeros(1, 3, 4000))


def torch_flex_kernel_is_right(seq_len: int) -> bool:
    """torch's own compiled CPU flex kernel agrees with sdpa at this length (torch 2.13 on AVX2 CPUs gets some
    lengths that are not a multiple of its block size wrong, e.g. 24, 56, 72: an upstream bug, pytorch#159247)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q, k, v = torch.randn(3, 1, 4, seq_len, 16, generator=torch.Generator().manual_seed(0))
    mask = create_block_mask(lambda b, h, i, j: i >= j, None, None, seq_len, seq_len, device="cpu")
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    return (torch.compile(flex_attention)(q, k, v, block_mask=mask) - reference).abs().max() < 1e-4


@pytest.mark.slow
@torch.no_grad()
def test_flex_attention_matches_sdpa_with_packed_documents(tiny_model):
    """flex_attention (compiled on first use; forward only: it has no CPU backward) agrees with sdpa."""
    if not torch_flex_kernel_is_right(32):
        pytest.xfail("torch's compiled CPU flex_attention is wrong at this length on this CPU (pytorch#159247)")
    input_ids = torch.randint(0, 97, (2, 32), generator=torch.Generator().manual_seed(1))
    positions = torch.cat([torch.arange(10), torch.arange(22)])[None].expand(2, -1)
    sdpa = tiny_model(input_ids, position_ids=positions, use_cache=False).logits
    tiny_model.set_attn_implementation("flex_attention")
    flex = tiny_model(input_ids, position_ids=positions, use_cache=False).logits
    assert (sdpa - flex).abs().max() < 1e-4


@pytest.mark.slow
def test_torch_compile_gives_the_same_loss_and_gradients(tiny_model, input_ids):
    """The training forward (chunked loss included) compiles as one graph and matches eager."""
    model = tiny_model.train()
    explained = torch._dynamo.explain(model)(input_ids=input_ids, shift_labels=input_ids)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    torch._dynamo.reset()
    model(input_ids=input_ids, shift_labels=input_ids).loss.backward()
    eager = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss = torch.compile(model, dynamic=False)(input_ids=input_ids, shift_labels=input_ids).loss
    loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, eager[name], atol=1e-5, rtol=1e-4, msg=name)


def test_the_chunked_loss_does_no_gradient_work_under_no_grad(tiny_model, input_ids):
    from torch.utils.flop_counter import FlopCounterMode

    model = tiny_model.train()  # training mode: with labels the loss replaces the logits
    with torch.no_grad():
        with FlopCounterMode(display=False) as with_labels:
            model(input_ids, labels=input_ids)
        with FlopCounterMode(display=False) as logits_only:
            model(input_ids)
    assert with_labels.get_total_flops() == logits_only.get_total_flops()


def test_weights_missing_from_a_checkpoint_start_as_nanochat_starts_them(tiny_model, tmp_path):
    """from_pretrained initialises only what the file lacks, each by its kind (fc2 zero, fc1 by the matrix rule)."""
    from safetensors.torch import load_file, save_file

    tiny_model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    missing = ["model.layers.0.mlp.fc2.weight", "model.layers.1.mlp.fc1.weight"]
    save_file({k: v for k, v in weights.items() if k not in missing}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    loaded = HansardGPTForCausalLM.from_pretrained(tmp_path)
    state = loaded.state_dict()
    assert not state[missing[0]].any()
    fc1, d = state[missing[1]], tiny_model.config.hidden_size
    assert fc1.std().item() == pytest.approx(1 / math.sqrt(d), rel=0.1) and not torch.equal(fc1, weights[missing[1]])
    assert all(torch.equal(state[k], v) for k, v in weights.items() if k not in missing)

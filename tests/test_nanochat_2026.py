"""nanochat's 2026 recipe as options: the architecture (against an independent restatement of nanochat 92d63d4's
forward), its counts and init, cache/packing/backends with sliding windows, the export refusal, the AdamW groups,
the scaling rules behind the `-2026` recipes, and `import-nanochat` of nanochat's own checkpoints."""

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.budget import nanochat_2026_scaling
from hansard_hf.configuration_hansard_gpt import NANOCHAT_2026
from hansard_hf.hub import export_to_nanochat
from hansard_hf.modeling_hansard_gpt import CACHE_FIELD
from hansard_hf.nanochat_checkpoint import load_nanochat_checkpoint
from hansard_hf.optimization import param_groups
from hansard_hf.plan import plan
from hansard_hf.recipe import Recipe
from conftest import randomized, tiny_config

FEATURES = dict(layer_types="SSSL", value_embeddings=True, residual_lambdas=True, smear=True, backout=True, qk_gain=1.2)


def config_2026(**overrides) -> HansardGPTConfig:
    return tiny_config(depth=5, num_key_value_heads=2, sliding_window=9, **{**NANOCHAT_2026, **overrides})


# ---------------------------------------------------------------- the config: counts, windows, FLOPs


def test_d24_counts_equal_nanochats():
    """nanochat 92d63d4 at depth 24, aspect 64, vocab 65,536 (reference notes, HEAD table)."""
    config = HansardGPTConfig(depth=24, aspect_ratio=64, vocab_size=65536, **NANOCHAT_2026)
    assert config.parameter_counts() == dict(wte=100_663_296, value_embeds=1_207_959_552, lm_head=100_663_296,
                                             transformer_matrices=679_478_976, scalars=74)
    assert config.num_parameters() == 2_088_765_194
    assert config.scaling_parameters() == 780_142_272
    # 6 x matmul weights + 12 x heads x head_dim x min(window, T) per layer, windows 512 (S) and 2048 (L, last L)
    windows = 18 * 512 + 6 * 2048
    assert config.flops_per_token() == 6 * (679_478_976 + 100_663_296 + 24) + 12 * 12 * 128 * windows
    assert config.sliding_window == 513  # nanochat's window of 512 keys back, plus the query itself


def test_model_counts_equal_config_counts():
    for overrides in ({}, NANOCHAT_2026, {"value_embeddings": True}, {"smear": True, "backout": True}):
        config = tiny_config(depth=5, **overrides)
        assert HansardGPTForCausalLM(config).num_parameters() == config.num_parameters(), overrides


def test_window_patterns_and_bad_values():
    config = tiny_config(depth=6, layer_types="SL")
    assert config.layer_types == ["sliding_attention", "full_attention"] * 3
    assert tiny_config(depth=3, layer_types="S").layer_types == ["sliding_attention"] * 2 + ["full_attention"]
    assert config.sliding_window == 129  # ceil(64 / 4 / 128) * 128 + 1
    assert tiny_config(sliding_window=5).layer_types == ["sliding_attention"] * 2  # transformers' convention
    with pytest.raises(ValueError, match="only S and L"):
        tiny_config(layer_types="SXL")
    with pytest.raises(ValueError, match="needs 2 entries"):
        tiny_config(layer_types=["full_attention"])
    with pytest.raises(ValueError, match="initialization"):
        tiny_config(initialization="xavier")


def test_default_model_has_no_2026_parts():
    model = HansardGPTForCausalLM(tiny_config())
    assert model.config.features_2026() == []
    names = {name for name, _ in model.named_parameters()}
    assert not {n for n in names if "lambda" in n or "value" in n or "smear" in n}


# ---------------------------------------------------------------- the forward, against nanochat's own formulas


def nanochat_forward(model: HansardGPTForCausalLM, ids: torch.Tensor) -> torch.Tensor:
    """nanochat 92d63d4's GPT.forward restated in plain torch on our weights (no code of ours but the weights)."""
    c, w = model.config, dict(model.named_parameters())
    T, heads, kv, hd = ids.shape[1], c.num_attention_heads, c.num_key_value_heads, c.head_dim
    norm = lambda x: F.rms_norm(x, (x.size(-1),))  # noqa: E731  nanochat's weightless norm (torch's eps)
    inv = 1.0 / (100000 ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.outer(torch.arange(T).float(), inv)
    cos, sin = freqs.cos()[None, :, None], freqs.sin()[None, :, None]

    def rotary(x):
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return torch.cat([x1 * cos + x2 * sin, -x1 * sin + x2 * cos], 3)

    x = norm(w["model.embed_tokens.weight"][ids])
    gate = w["model.smear_lambda"] * torch.sigmoid(x[:, 1:, :24] @ w["model.smear_gate.weight"].T)
    x = torch.cat([x[:, :1], x[:, 1:] + gate * x[:, :-1]], 1)
    x0, middle = x, c.num_hidden_layers // 2
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        x = w["model.resid_lambdas"][i] * x + w["model.x0_lambdas"][i] * x0
        h = norm(x)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(*ids.shape, heads, hd)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(*ids.shape, kv, hd)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(*ids.shape, kv, hd)
        if i % 2 == (c.num_hidden_layers - 1) % 2:
            g = 3 * torch.sigmoid(h[..., :12] @ w[p + "self_attn.value_gate.weight"].T)
            v = v + g.unsqueeze(-1) * w[p + "self_attn.value_embed.weight"][ids].view(*ids.shape, kv, hd)
        q, k = norm(rotary(q)) * 1.2, norm(rotary(k)) * 1.2
        window = T if c.layer_types[i] == "full_attention" else c.sliding_window - 1  # keys back
        row, col = torch.arange(T)[:, None], torch.arange(T)[None]
        mask = (col <= row) & (row - col <= window)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                           enable_gqa=True)
        x = x + y.transpose(1, 2).reshape(*ids.shape, -1) @ w[p + "self_attn.o_proj.weight"].T
        m = F.relu(norm(x) @ w[p + "mlp.fc1.weight"].T).square()
        x = x + m @ w[p + "mlp.fc2.weight"].T
        if i == middle:
            x_mid = x
    x = norm(x - w["model.backout_lambda"] * x_mid)
    return 15 * torch.tanh((x @ w["lm_head.weight"].T) / 15)


def test_forward_equals_nanochat_2026_formulas():
    model = randomized(HansardGPTForCausalLM(config_2026()), seed=2)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lm_head" in name:
                parameter.mul_(0.1)  # keep the logits off the softcap's flat part
    ids = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(ids, use_cache=False).logits, nanochat_forward(model, ids)
    assert (ours - theirs).abs().max().item() < 2e-4
    assert theirs.std() > 0.5  # logits that say something


@pytest.mark.parametrize("feature", list(FEATURES) + ["rope_theta"])
def test_each_feature_changes_the_output(feature):
    """No option is a silent no-op: each one alone moves the logits of a randomised model."""
    ids = torch.randint(0, 97, (1, 40), generator=torch.Generator().manual_seed(0))
    base = randomized(HansardGPTForCausalLM(tiny_config(depth=4)), seed=1)
    option = {"rope_theta": 100000.0, "layer_types": "SL"}.get(feature, FEATURES.get(feature))
    window = {"sliding_window": 5} if feature == "layer_types" else {}
    model = randomized(HansardGPTForCausalLM(tiny_config(depth=4, **{feature: option}, **window)), seed=5)
    model.load_state_dict(base.state_dict(), strict=False)  # the same weights; the feature's own ones random
    with torch.no_grad():
        difference = (model(ids).logits - base(ids).logits).abs().max().item()
    assert difference > 1e-3, feature


@pytest.mark.slow
def test_training_forward_compiles_to_one_graph_and_equals_eager():
    model = randomized(HansardGPTForCausalLM(config_2026())).train()
    ids = torch.randint(0, 97, (2, 32), generator=torch.Generator().manual_seed(0))
    eager = model(input_ids=ids, labels=ids).loss
    compiled = torch.compile(model, fullgraph=True)(input_ids=ids, labels=ids).loss  # fullgraph: no graph breaks
    assert compiled.item() == pytest.approx(eager.item(), rel=1e-5)


def test_value_embeddings_need_input_ids():
    model = HansardGPTForCausalLM(config_2026())
    with pytest.raises(ValueError, match="pass input_ids"):
        model(inputs_embeds=torch.randn(1, 4, model.config.hidden_size))


# ---------------------------------------------------------------- cache, packing, backends with sliding windows


@pytest.fixture
def model_2026():
    torch.manual_seed(0)
    model = HansardGPTForCausalLM(config_2026())
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


def test_cache_decoding_equals_full_forward_past_the_window(model_2026):
    ids = torch.randint(0, 97, (2, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model_2026(ids, use_cache=False).logits
        out = model_2026(ids[:, :12], use_cache=True)
        cache, steps = getattr(out, CACHE_FIELD), [out.logits]
        for t in range(12, 30):  # 18 single tokens, well past the 9-key window
            out = model_2026(ids[:, t: t + 1], use_cache=True, **{CACHE_FIELD: cache})
            steps.append(out.logits)
    assert (torch.cat(steps, 1) - full).abs().max().item() < 1e-5
    generated = model_2026.generate(ids[:, :5], max_new_tokens=20, min_new_tokens=20, do_sample=False)
    with torch.no_grad():
        greedy = model_2026(generated, use_cache=False).logits[:, 4:-1].argmax(-1)
    assert torch.equal(greedy, generated[:, 5:])


def test_beam_search_and_prompt_lookup_keep_the_smear_right(model_2026):
    """Beam search reorders the cache and prompt lookup crops it: both must carry the smear's previous embedding
    along, so each scores every step as the same search recomputing everything without a cache does."""
    with torch.no_grad():
        model_2026.model.smear_lambda.fill_(1.0)  # a strong smear: a stale previous embedding moves the scores
    ids = torch.randint(0, 97, (2, 6), generator=torch.Generator().manual_seed(5))
    beams = dict(max_new_tokens=12, min_new_tokens=12, num_beams=3, do_sample=False, return_dict_in_generate=True,
                 output_scores=True)
    cached, recomputed = (model_2026.generate(ids, use_cache=use, **beams) for use in (True, False))
    assert torch.equal(cached.sequences, recomputed.sequences)
    assert (cached.sequences_scores - recomputed.sequences_scores).abs().max().item() < 1e-5
    repetitive = torch.tensor([[5, 6, 7, 8, 5, 6, 7, 8, 5, 6]])  # prompt lookup proposes candidates, crops rejects
    greedy = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False, return_dict_in_generate=True,
                  output_logits=True)
    looked_up = model_2026.generate(repetitive, prompt_lookup_num_tokens=3, **greedy)
    recomputed = model_2026.generate(repetitive, use_cache=False, **greedy)
    assert torch.equal(looked_up.sequences, recomputed.sequences)
    assert (torch.stack(looked_up.logits) - torch.stack(recomputed.logits)).abs().max().item() < 1e-4


def test_a_cache_without_the_smears_embeddings_is_refused(model_2026):
    ids = torch.randint(0, 97, (2, 8))
    with torch.no_grad():
        cache = getattr(model_2026(ids, use_cache=True), CACHE_FIELD)
        with pytest.raises(ValueError, match="holds 8 tokens but not the smear's embeddings of them for this batch of 1"):
            model_2026(ids[:1, :1], use_cache=True, **{CACHE_FIELD: cache})  # another batch's cache
        del cache.smear_embeddings
        with pytest.raises(ValueError, match="pass a cache this model filled"):
            model_2026(ids[:, :1], use_cache=True, **{CACHE_FIELD: cache})


def test_packed_documents_equal_separate_ones(model_2026):
    a, b = torch.randint(0, 97, (1, 20)), torch.randint(0, 97, (1, 25))
    positions = torch.cat([torch.arange(20), torch.arange(25)])[None]
    with torch.no_grad():
        packed = model_2026(torch.cat([a, b], 1), position_ids=positions, use_cache=False).logits
        alone = torch.cat([model_2026(a, use_cache=False).logits, model_2026(b, use_cache=False).logits], 1)
    assert (packed - alone).abs().max().item() < 1e-5


@pytest.mark.parametrize("backend", ["eager", "flex_attention"])
def test_attention_backends_agree_with_sdpa(model_2026, backend):
    ids = torch.randint(0, 97, (2, 33))
    with torch.no_grad():
        sdpa = model_2026(ids, use_cache=False).logits
        model_2026.set_attn_implementation(backend)
        other = model_2026(ids, use_cache=False).logits
    assert (sdpa - other).abs().max().item() < 1e-5


# ---------------------------------------------------------------- initialisation, export, save/load


def test_nanochat_2026_initialisation():
    config = tiny_config(depth=5, aspect_ratio=64, head_dim=32, vocab_size=4096, **NANOCHAT_2026)
    torch.manual_seed(0)
    model = HansardGPTForCausalLM(config)
    s, m = math.sqrt(3 / 320), model.model
    assert m.embed_tokens.weight.std().item() == pytest.approx(0.8, rel=0.02)
    assert model.lm_head.weight.std().item() == pytest.approx(0.001, rel=0.02)
    attention = m.layers[0].self_attn
    for weight in (attention.q_proj.weight, attention.k_proj.weight, m.layers[4].self_attn.value_embed.weight):
        assert weight.abs().max().item() <= s and weight.abs().max().item() > 0.95 * s
    assert m.layers[0].mlp.fc1.weight.abs().max().item() == pytest.approx(0.4 * s, rel=0.05)
    assert not attention.o_proj.weight.any() and not m.layers[0].mlp.fc2.weight.any()
    for gate in (m.smear_gate.weight, m.layers[4].self_attn.value_gate.weight):
        assert 0 <= gate.min().item() and gate.max().item() <= 0.02
    torch.testing.assert_close(m.resid_lambdas, torch.tensor([1.15, 1.125, 1.10, 1.075, 1.05]))
    torch.testing.assert_close(m.x0_lambdas, torch.tensor([0.2, 0.1625, 0.125, 0.0875, 0.05]))
    assert m.smear_lambda.item() == 0 and m.backout_lambda.item() == pytest.approx(0.2)
    assert [i for i, layer in enumerate(m.layers) if layer.self_attn.value_embed is not None] == [0, 2, 4]


def test_export_refuses_2026_features_by_name(tmp_path):
    for feature, value in FEATURES.items():
        model = HansardGPTForCausalLM(tiny_config(depth=4, **{feature: value}))
        with pytest.raises(ValueError, match="native NanoChat does not have") as refused:
            export_to_nanochat(model, tmp_path / feature)
        assert feature in str(refused.value)
        assert not (tmp_path / feature).exists()


def test_saved_2026_model_loads_with_remote_code_in_a_fresh_process(model_2026, tmp_path):
    model_2026.save_pretrained(tmp_path / "m")
    ids = torch.randint(0, 97, (1, 20))
    with torch.no_grad():
        expected = model_2026(ids, use_cache=False).logits
    torch.save(ids, tmp_path / "ids.pt")
    script = (f"import torch; from transformers import AutoModelForCausalLM; "
              f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'm')!r}, trust_remote_code=True).eval(); "
              f"torch.save(m(torch.load({str(tmp_path / 'ids.pt')!r}), use_cache=False).logits, "
              f"{str(tmp_path / 'out.pt')!r})")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, capture_output=True)
    assert (torch.load(tmp_path / "out.pt") - expected).abs().max().item() < 1e-6


# ---------------------------------------------------------------- optimizer groups and scaling rules


def test_adamw_groups_follow_nanochat_setup_optimizer():
    """nanochat 92d63d4 `GPT.setup_optimizer`, restated: LRs, betas and weight decay per group."""
    model = HansardGPTForCausalLM(tiny_config(depth=4, **NANOCHAT_2026))
    groups = {g["name"]: g for g in param_groups(model, 0.02, 0.3, 0.008, 0.5, "nanochat-2026")}
    scale = (model.config.hidden_size / 768) ** -0.5
    expected = {  # name: (lr, betas, weight decay, parameter count)
        "embedding": (0.3 * scale, (0.8, 0.995), 0.001, 1),
        "unembedding": (0.008 * scale, (0.8, 0.96), 0.01, 1),
        "value_embedding": (0.15 * scale, (0.8, 0.995), 0.01, 2),
        "resid_lambdas": (0.005, (0.8, 0.95), 0.05, 1),
        "x0_lambdas": (0.5, (0.96, 0.95), 0.0, 1),
        "smear": (0.2, (0.8, 0.95), 0.0, 3),
    }
    for name, (lr, betas, decay, count) in expected.items():
        g = groups[name]
        assert g["lr"] == pytest.approx(lr), name
        assert (g["betas"], g["weight_decay"], len(g["params"])) == (betas, decay, count), name
        assert not g["use_muon"]
    # Muon: every block matrix, value gates included, nothing else
    assert len(groups["matrices"]["params"]) == 4 * 6 + 2
    covered = sum(len(g["params"]) for g in groups.values())
    assert covered == len(list(model.parameters()))
    oct_2025 = {g["name"]: g for g in param_groups(model)}
    assert "betas" not in oct_2025["embedding"] and "weight_decay" not in oct_2025["unembedding"]


def test_scaling_rules_give_nanochats_table_and_the_recipes_follow_them():
    """nanochat 92d63d4 at ratio 12, vocab 65,536 (reference notes): batch, LR scale, weight decay and steps."""
    table = {16: (2**19, 1.0, 0.1411, 6144), 24: (2**20, 2**0.5, 0.0687, 8928), 36: (2**21, 2.0, 0.0310, 13986),
             48: (2**21, 2.0, 0.0134, 32256)}
    for depth, (batch, lr_scale, decay, steps) in table.items():
        recipe = Recipe.load(f"d{depth}-2026")
        config = recipe.model_config()
        reference = HansardGPTConfig(depth=12, aspect_ratio=64, head_dim=128, vocab_size=65536, **NANOCHAT_2026)
        rule = nanochat_2026_scaling(config.scaling_parameters(), reference.scaling_parameters(), 12)
        assert (rule["total_batch_size"], rule["lr_scale"]) == (batch, pytest.approx(lr_scale))
        assert rule["weight_decay"] == pytest.approx(decay, abs=5e-5)
        s = recipe.settings
        assert s["total_batch_size"] == batch and s["matrix_weight_decay"] == pytest.approx(rule["weight_decay"])
        for key, base in (("matrix_lr", 0.02), ("embedding_lr", 0.3), ("unembedding_lr", 0.008), ("scalar_lr", 0.5)):
            assert s[key] == pytest.approx(base * lr_scale), (depth, key)
        assert plan(recipe).steps == steps


def test_plan_says_what_the_budget_counts_and_which_2026_parts_a_recipe_has():
    from hansard_hf.plan import describe_plan

    text = describe_plan(plan(Recipe.load("d24-2026")))
    assert "2,088,765,194 parameters (780,142,272 counted for the token budget: block matrices + lm_head)" in text
    assert "2026 parts   sliding windows (layer_types), value_embeddings, residual_lambdas, smear, backout" in text
    assert "tokens       9,361,686,528 in 8,928 steps" in text
    assert "2026 parts" not in describe_plan(plan(Recipe.load("d24")))


# ---------------------------------------------------------------- import of nanochat's own checkpoints


def nanochat_state_dict(layers=4, width=64, heads=4, kv_heads=2, vocab=97, seed=0, current=True) -> dict:
    """A checkpoint the way nanochat writes one: its key names and shapes, the vocabulary padded to 64."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.3  # noqa: E731
    padded, hd = -(-vocab // 64) * 64, width // heads
    state = {"transformer.wte.weight": rand(padded, width), "lm_head.weight": rand(padded, width)}
    for i in range(layers):
        p = f"transformer.h.{i}."
        state |= {p + "attn.c_q.weight": rand(width, width), p + "attn.c_k.weight": rand(kv_heads * hd, width),
                  p + "attn.c_v.weight": rand(kv_heads * hd, width), p + "attn.c_proj.weight": rand(width, width),
                  p + "mlp.c_fc.weight": rand(4 * width, width), p + "mlp.c_proj.weight": rand(width, 4 * width)}
        if current and i % 2 == (layers - 1) % 2:
            state |= {p + "attn.ve_gate.weight": rand(kv_heads, 12), f"value_embeds.{i}.weight": rand(padded, kv_heads * hd)}
    if current:
        state |= {"resid_lambdas": 1 + rand(layers), "x0_lambdas": rand(layers), "smear_gate.weight": rand(1, 24),
                  "smear_lambda": rand(1), "backout_lambda": rand(1)}
    return state


def write_nanochat(folder, state, step=5, layers=4, width=64, heads=4, kv_heads=2, vocab=97, seq=512, pattern="SSSL"):
    folder.mkdir(parents=True, exist_ok=True)
    model_config = dict(sequence_len=seq, vocab_size=vocab, n_layer=layers, n_head=heads, n_kv_head=kv_heads,
                        n_embd=width, **({"window_pattern": pattern} if pattern else {}))
    torch.save(state, folder / f"model_{step:06d}.pt")
    (folder / f"meta_{step:06d}.json").write_text(json.dumps({"step": step, "model_config": model_config}))
    return folder


def test_import_of_a_current_nanochat_checkpoint_equals_nanochats_forward(tmp_path):
    state = nanochat_state_dict()
    model = load_nanochat_checkpoint(write_nanochat(tmp_path / "nc", {"_orig_mod." + k: v for k, v in state.items()}))
    assert model.config.features_2026() == ["sliding windows (layer_types)", "value_embeddings", "residual_lambdas",
                                            "smear", "backout", "qk_gain=1.2"]
    assert model.config.sliding_window == 129 and model.config.rope_parameters["rope_theta"] == 100000.0
    torch.testing.assert_close(model.model.layers[1].self_attn.value_embed.weight, state["value_embeds.1.weight"][:97])
    ids = torch.randint(0, 97, (2, 160), generator=torch.Generator().manual_seed(4))  # past the 128-key window
    with torch.no_grad():
        assert (model(ids, use_cache=False).logits - nanochat_forward(model, ids)).abs().max().item() < 2e-4


def test_import_of_an_oct_2025_checkpoint_and_the_command_line(tmp_path):
    write_nanochat(tmp_path / "nc", nanochat_state_dict(current=False, seed=1), step=3, pattern=None)
    write_nanochat(tmp_path / "nc", nanochat_state_dict(current=False, seed=2), step=7, pattern=None)
    cli = [sys.executable, "-m", "hansard_hf.cli", "import-nanochat", str(tmp_path / "nc")]
    subprocess.run([*cli, str(tmp_path / "hf3"), "--step", "3"], check=True, capture_output=True)
    subprocess.run([*cli, str(tmp_path / "hf")], check=True, capture_output=True)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", trust_remote_code=True)
    assert model.config.features_2026() == [] and model.config.rope_parameters["rope_theta"] == 10000.0
    torch.testing.assert_close(model.lm_head.weight, nanochat_state_dict(current=False, seed=2)["lm_head.weight"][:97])
    assert not torch.equal(AutoModelForCausalLM.from_pretrained(tmp_path / "hf3", trust_remote_code=True).lm_head.weight,
                           model.lm_head.weight)


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.update({"transformer.h.0.attn.c_extra.weight": torch.zeros(2)}), r"no HansardGPT weight for \['transformer.h.0.attn.c_extra.weight'\]"),
    (lambda s: s.pop("transformer.h.2.mlp.c_fc.weight"), r"ours not filled \['model.layers.2.mlp.fc1.weight'\]"),
    (lambda s: s.update({"transformer.h.1.attn.ve_gate.weight": torch.zeros(2, 32), "transformer.h.3.attn.ve_gate.weight": torch.zeros(2, 32)}), "between Jan and Mar 2026"),
    (lambda s: s.pop("backout_lambda"), r"between Jan and Mar 2026 .*lacks \['backout_lambda'\]"),
    (lambda s: s.update({"transformer.h.0.mlp.c_fc.weight": torch.zeros(3, 64)}), r"wrong shapes \['model.layers.0.mlp.fc1.weight \(3, 64\)"),
])
def test_import_refuses_what_it_cannot_map_and_names_it(tmp_path, damage, message):
    state = nanochat_state_dict()
    damage(state)
    with pytest.raises(ValueError, match=message):
        load_nanochat_checkpoint(write_nanochat(tmp_path / "nc", state))


def test_import_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no nanochat model_<step>.pt"):
        load_nanochat_checkpoint(tmp_path)
    write_nanochat(tmp_path / "nc", nanochat_state_dict())
    with pytest.raises(FileNotFoundError, match=r"steps here: \[5\]"):
        load_nanochat_checkpoint(tmp_path / "nc", step=9)
    (tmp_path / "nc" / "meta_000005.json").write_text("{}")
    with pytest.raises(ValueError, match="not a nanochat meta file"):
        load_nanochat_checkpoint(tmp_path / "nc")


def test_model_card_names_the_2026_parts_and_offers_no_export(tmp_path):
    from hansard_hf.card import model_card

    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 3, "log_history": []}))
    card = model_card(tmp_path, tiny_config(depth=4, **NANOCHAT_2026), repo_id="me/hansard-2026")
    assert "nanochat 2026: sliding windows (layer_types), value_embeddings, residual_lambdas" in card
    assert "`hansard-hf export` refuses it" in card and "nanochat-out" not in card
    assert "nanochat-out" in model_card(tmp_path, tiny_config(), repo_id="me/hansard-2025")

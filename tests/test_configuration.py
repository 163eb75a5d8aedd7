"""HansardGPTConfig: depth -> sizes, the recipes' parameter table, nanochat's FLOPs estimate, clear errors."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig, NanoChatConfig

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from conftest import randomized, tiny_config

# The README's recipe table (width, heads, parameters, FLOPs per token at 2048): vocab 65,536, aspect 32, every
# parameter counted; the same numbers the team agreed on for d16-d48.
RECIPE_TABLE = {
    16: (512, 4, 117_440_512, 7.05e8),
    24: (768, 6, 270_532_608, 1.77e9),
    36: (1152, 9, 724_303_872, 4.91e9),
    48: (1536, 12, 1_560_281_088, 1.06e10),
}


@pytest.mark.parametrize("depth", sorted(RECIPE_TABLE))
def test_depth_gives_design_table(depth):
    width, heads, params, flops = RECIPE_TABLE[depth]
    config = HansardGPTConfig(depth=depth)
    assert (config.hidden_size, config.num_attention_heads, config.num_key_value_heads) == (width, heads, heads)
    assert (config.intermediate_size, config.num_hidden_layers, config.head_dim) == (4 * width, depth, 128)
    assert config.num_parameters() == params
    with torch.device("meta"):
        model = HansardGPTForCausalLM(config)
    assert model.num_parameters() == params
    assert model.num_parameters(exclude_embeddings=True) == config.num_parameters(exclude_embeddings=True)
    assert config.flops_per_token(2048) == pytest.approx(flops, rel=5e-3)
    assert config.flops_per_token(2048) == 6 * (params - 65536 * width) + 12 * depth * width * 2048


def test_aspect_ratio_64_gives_nanochat_widths():
    # nanochat's own rule (aspect 64): d16 -> 1024 wide, 8 heads, 335,544,320 params (nanochat.md section 8a).
    config = HansardGPTConfig(depth=16, aspect_ratio=64)
    assert (config.hidden_size, config.num_attention_heads, config.num_parameters()) == (1024, 8, 335_544_320)
    assert HansardGPTConfig(depth=20, aspect_ratio=64).num_parameters() == 560_988_160  # the d20 speedrun


def test_width_rounds_up_to_head_dim():
    assert HansardGPTConfig(depth=5).hidden_size == 256  # ceil(160 / 128) * 128


def test_flops_per_token_matches_flop_counter():
    """6N + 12*L*d*T equals the matmul FLOPs of one forward+backward (eager attention, no causal halving)."""
    config = tiny_config(loss_chunk_size=7)
    model = randomized(HansardGPTForCausalLM(config)).train()
    model.config._attn_implementation = "eager"
    ids = torch.randint(0, config.vocab_size, (3, 20))
    with FlopCounterMode(display=False) as counter:
        model(ids, labels=ids).loss.backward()
    # The loss's chunked cross-entropy covers 19 shifted targets per row but runs its matmuls on all 20 rows.
    assert counter.get_total_flops() == config.flops_per_token(20) * 3 * 20


def test_every_field_can_be_explicit_like_nanochat():
    native = NanoChatConfig(
        vocab_size=500, hidden_size=96, intermediate_size=200, num_hidden_layers=3, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, final_logit_softcapping=20.0,
    )
    config = HansardGPTConfig(
        vocab_size=500, hidden_size=96, intermediate_size=200, num_hidden_layers=3, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, final_logit_softcapping=20.0,
    )
    assert config.depth == 3 and config.head_dim == 16
    for field in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "rms_norm_eps", "final_logit_softcapping", "rope_parameters"):
        assert getattr(config, field) == getattr(native, field), field


def test_rope_theta_shortcut_and_json_round_trip(tmp_path):
    config = tiny_config(rope_theta=500.0)
    assert config.rope_parameters == {"rope_type": "default", "rope_theta": 500.0}
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, HansardGPTConfig)
    without_path = lambda c: {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}  # noqa: E731
    assert without_path(loaded) == without_path(config)


@pytest.mark.parametrize(
    "kwargs, fields",
    [
        (dict(depth=0), ["depth=0"]),
        (dict(depth=2, num_hidden_layers=3), ["num_hidden_layers=3", "depth=2"]),
        (dict(depth=2, hidden_size=100, num_attention_heads=3), ["hidden_size=100", "num_attention_heads=3"]),
        (dict(depth=2, num_attention_heads=6, hidden_size=96, num_key_value_heads=4),
         ["num_attention_heads=6", "num_key_value_heads=4"]),
        (dict(depth=2, hidden_size=100), ["hidden_size=100", "head_dim=128"]),
        (dict(depth=2, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}), ["rope_type"]),
    ],
)
def test_impossible_config_names_the_fields(kwargs, fields):
    with pytest.raises(ValueError) as error:
        HansardGPTConfig(**kwargs)
    message = str(error.value)
    assert message.count("\n") == 0
    for field in fields:
        assert field in message

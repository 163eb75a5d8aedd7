"""Move checkpoints between HansardGPT and transformers' native NanoChat.

Both use the same weight names and the same arithmetic, so a conversion is a config translation plus a
state-dict copy, and the two models give identical logits.
"""

from pathlib import Path

import torch
from transformers import AutoTokenizer, NanoChatConfig, NanoChatForCausalLM, PreTrainedModel
from transformers.initialization import no_init_weights

from .configuration_hansard_gpt import HansardGPTConfig
from .files import atomic_directory
from .modeling_hansard_gpt import HansardGPTForCausalLM

# Fields with the same name and meaning in HansardGPTConfig and NanoChatConfig.
SHARED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "hidden_act",
    "attention_dropout",
    "rms_norm_eps",
    "final_logit_softcapping",
    "attention_bias",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def to_nanochat_config(config: HansardGPTConfig) -> NanoChatConfig:
    """The NanoChatConfig of the same architecture."""
    fields = {name: getattr(config, name) for name in SHARED_FIELDS}
    return NanoChatConfig(**fields, rope_parameters=dict(config.rope_parameters), tie_word_embeddings=False)


def from_nanochat_config(config: NanoChatConfig) -> HansardGPTConfig:
    """The HansardGPTConfig of the same architecture."""
    if getattr(config, "tie_word_embeddings", False):
        raise ValueError("NanoChat config has tie_word_embeddings=True; HansardGPT (like nanochat) keeps them untied.")
    fields = {name: getattr(config, name) for name in SHARED_FIELDS}
    return HansardGPTConfig(**fields, rope_parameters=dict(config.rope_parameters))


def _copy_weights(source: PreTrainedModel, target_class, target_config) -> PreTrainedModel:
    """A `target_class` model holding `source`'s weights (same names), in `source`'s dtype and device."""
    with no_init_weights():
        target = target_class(target_config)
    target.to(device=source.device, dtype=source.dtype)
    target.load_state_dict(source.state_dict(), strict=True)
    return target.eval()


def _save_with_tokenizer(model: PreTrainedModel, source, out_dir, overwrite: bool) -> Path:
    """Save `model` to `out_dir` atomically, with the tokenizer of the `source` folder when it has one."""
    with atomic_directory(out_dir, overwrite) as tmp:
        model.save_pretrained(tmp)
        if isinstance(source, (str, Path)) and any((Path(source) / name).exists() for name in TOKENIZER_FILES):
            AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
    return Path(out_dir)


def load_from_nanochat(model_or_path) -> HansardGPTForCausalLM:
    """A HansardGPTForCausalLM with the weights of a native NanoChatForCausalLM (model, folder or Hub id)."""
    native = model_or_path
    if not isinstance(native, NanoChatForCausalLM):
        native = NanoChatForCausalLM.from_pretrained(model_or_path)
    return _copy_weights(native, HansardGPTForCausalLM, from_nanochat_config(native.config))


def export_to_nanochat(model_or_path, out_dir, overwrite: bool = False) -> Path:
    """Write `out_dir` as a native transformers NanoChat checkpoint (no trust_remote_code needed to load it).

    `model_or_path` is a HansardGPTForCausalLM or a folder/Hub id holding one; a tokenizer in that folder is copied.
    """
    model = model_or_path
    if not isinstance(model, HansardGPTForCausalLM):
        model = HansardGPTForCausalLM.from_pretrained(model_or_path)
    native = _copy_weights(model, NanoChatForCausalLM, to_nanochat_config(model.config))
    return _save_with_tokenizer(native, model_or_path, out_dir, overwrite)


def import_from_nanochat(model_or_path, out_dir, overwrite: bool = False) -> Path:
    """Write `out_dir` as a HansardGPT checkpoint (code included) from a native NanoChat model or folder."""
    return _save_with_tokenizer(load_from_nanochat(model_or_path), model_or_path, out_dir, overwrite)


@torch.no_grad()
def max_logit_difference(a: PreTrainedModel, b: PreTrainedModel, input_ids: torch.Tensor) -> float:
    """Largest absolute difference between the logits of two causal LMs on `input_ids`."""
    return (a(input_ids).logits.float() - b(input_ids).logits.float()).abs().max().item()

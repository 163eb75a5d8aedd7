"""Move checkpoints to the Hub, and between HansardGPT and transformers' native NanoChat.

HansardGPT and NanoChat use the same weight names and the same arithmetic, so a conversion is a config
translation plus a state-dict copy, and the two models give identical logits. A push stages exactly what a user
needs (weights, config with auto_map, code, tokenizer, model card) and uploads it in one call.
"""

import json
import shutil
import tempfile
from pathlib import Path

import torch
from huggingface_hub import HfApi
from transformers import AutoTokenizer, NanoChatConfig, NanoChatForCausalLM, PreTrainedModel
from transformers.initialization import no_init_weights
from transformers.utils import cached_file

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
    """The NanoChatConfig of the same architecture; refuses a model with nanochat 2026 parts (native NanoChat has
    none of them)."""
    if features := config.features_2026():
        raise ValueError(
            f"This model uses nanochat 2026 features that transformers' native NanoChat does not have: "
            f"{', '.join(features)}. Share it as a HansardGPT checkpoint (push; loads with trust_remote_code) instead."
        )
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


def _has_tokenizer(source) -> bool:
    """Whether `source` (a folder or a Hub id; not a model object) holds a tokenizer."""
    if not isinstance(source, (str, Path)):
        return False
    if Path(source).is_dir():
        return any((Path(source) / name).exists() for name in TOKENIZER_FILES)
    return cached_file(str(source), TOKENIZER_FILES[0], _raise_exceptions_for_missing_entries=False) is not None


def _copy_tokenizer(source, folder: Path) -> None:
    """Save the tokenizer of `source` (a folder or Hub id) into `folder`, when it has one."""
    if _has_tokenizer(source):
        AutoTokenizer.from_pretrained(source).save_pretrained(folder)


def _save_with_tokenizer(model: PreTrainedModel, source, out_dir, overwrite: bool) -> Path:
    """Save `model` to `out_dir` atomically, with the tokenizer of the `source` folder when it has one."""
    with atomic_directory(out_dir, overwrite) as tmp:
        model.save_pretrained(tmp)
        _copy_tokenizer(source, tmp)
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


def stage_for_hub(checkpoint, out_dir, repo_id: str) -> Path:
    """Write exactly what a Hub repo needs into `out_dir`: safetensors weights, config.json with auto_map, the
    modeling code, generation config, the tokenizer and its token-bytes table, the model card and its curves plot.
    Optimizer, scheduler, RNG and trainer state stay behind."""
    from .card import PLOT_FILE, model_card, plot, trainer_state
    from .tokenization import TOKEN_BYTES_FILE

    checkpoint, out = Path(checkpoint), Path(out_dir)
    model = HansardGPTForCausalLM.from_pretrained(checkpoint)
    with atomic_directory(out, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        _copy_tokenizer(checkpoint, tmp)
        if (checkpoint / TOKEN_BYTES_FILE).exists():
            shutil.copy(checkpoint / TOKEN_BYTES_FILE, tmp / TOKEN_BYTES_FILE)
        run_dir = checkpoint if (checkpoint / "trainer_state.json").exists() else checkpoint.parent
        recipe_file = next((d / "recipe.json" for d in (checkpoint, checkpoint.parent) if (d / "recipe.json").exists()), None)
        recipe = json.loads(recipe_file.read_text()) if recipe_file else None
        try:
            trainer_state(run_dir)
        except FileNotFoundError:
            (tmp / "README.md").write_text(f"# {repo_id}\n\nA HansardGPT checkpoint (no training log found).\n")
        else:
            plot(run_dir, tmp / PLOT_FILE)
            (tmp / "README.md").write_text(model_card(run_dir, repo_id, model.config, recipe))
    return out


def upload(folder, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """The wire: create the repo if needed and upload the staged folder. Returns the commit URL."""
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload HansardGPT checkpoint")


def push(checkpoint, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """`hansard-hf push`: stage a checkpoint (or finished run folder) for the Hub, then upload it."""
    with tempfile.TemporaryDirectory() as staging:
        folder = stage_for_hub(checkpoint, Path(staging) / "repo", repo_id)
        return upload(folder, repo_id, private, token)

"""Move checkpoints to the Hub, and between HansardGPT and transformers' native NanoChat.

HansardGPT and NanoChat use the same weight names and the same arithmetic, so a conversion is a config
translation plus a state-dict copy, and the two models give identical logits. A push checks the token and the Hub
first, then stages exactly what a user needs (weights, config with auto_map, code, tokenizer, model card) and
uploads it in one call. Nothing here runs code from the folder or repo it reads: models load with this package's
classes or transformers' own, tokenizers as plain `tokenizers` files.
"""

import json
import shutil
import tempfile
from pathlib import Path

import torch
from huggingface_hub import HfApi, constants, get_token, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
from transformers import NanoChatConfig, NanoChatForCausalLM, PreTrainedModel, PreTrainedTokenizerFast
from transformers.initialization import no_init_weights
from transformers.utils import cached_file

from .configuration_hansard_gpt import HansardGPTConfig
from .files import atomic_directory, did_you_mean, is_hub_id
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


def _read_config(source) -> dict | None:
    """config.json of a folder or Hub repo as a dict (None when there is none); a missing folder, or a Hub that
    cannot be reached, is one error naming it."""
    if Path(source).is_dir():
        file = Path(source) / "config.json"
    elif not is_hub_id(source):
        raise FileNotFoundError(f"{source}: no such folder{did_you_mean(Path(source))}, nor a Hub repo id (owner/name).")
    else:
        try:
            file = Path(hf_hub_download(str(source), "config.json"))
        except LocalEntryNotFoundError:  # offline, or the Hub did not answer, and not in the cache
            hub = "is switched off (HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE else "cannot be reached"
            raise OSError(f"{source}: not in the Hub cache, and the Hub {hub}.") from None
        except (EntryNotFoundError, RepositoryNotFoundError):
            return None
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except ValueError as error:
        raise ValueError(f"{file} is damaged ({error}): not readable as JSON.") from None


def load_model(source, model_class):
    """A `model_class` (HansardGPTForCausalLM, NanoChatForCausalLM) from a folder or Hub id, with the package's or
    transformers' own code: one clear error for a folder that holds another kind of model, none, or a damaged one."""
    expected = model_class.config_class.model_type
    config = _read_config(source)
    if config is None:
        raise FileNotFoundError(f"{source}: no config.json there, so no model: name a run folder, a checkpoint-N "
                                "folder or a Hub repo id that holds one.")
    if config.get("model_type") != expected:
        raise ValueError(f"{source} holds a {config.get('model_type')!r} model, not a {expected!r} one.")
    try:
        return model_class.from_pretrained(source)
    except Exception as error:  # noqa: BLE001 - safetensors, torch and transformers each raise their own kind
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if not Path(source).is_dir():
            raise OSError(f"{source}: the model could not be loaded from the Hub ({reason}).") from None
        raise ValueError(f"{source}: the model cannot be loaded ({reason}); a file in it is incomplete or "
                         "damaged.") from None


def _has_tokenizer(source) -> bool:
    """Whether `source` (a folder or a Hub id; not a model object) holds a tokenizer."""
    if not isinstance(source, (str, Path)):
        return False
    if Path(source).is_dir():
        return any((Path(source) / name).exists() for name in TOKENIZER_FILES)
    return cached_file(str(source), TOKENIZER_FILES[0], _raise_exceptions_for_missing_entries=False) is not None


def _copy_tokenizer(source, folder: Path) -> None:
    """Save the tokenizer of `source` (a folder or Hub id) into `folder`, when it has one. Read as a plain fast
    tokenizer: AutoTokenizer would read the model's config.json and offer to run the folder's own code."""
    if _has_tokenizer(source):
        PreTrainedTokenizerFast.from_pretrained(source).save_pretrained(folder)


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
        native = load_model(model_or_path, NanoChatForCausalLM)
    return _copy_weights(native, HansardGPTForCausalLM, from_nanochat_config(native.config))


def export_to_nanochat(model_or_path, out_dir, overwrite: bool = False) -> Path:
    """Write `out_dir` as a native transformers NanoChat checkpoint (no trust_remote_code needed to load it).

    `model_or_path` is a HansardGPTForCausalLM or a folder/Hub id holding one; a tokenizer in that folder is copied.
    """
    model = model_or_path
    if not isinstance(model, HansardGPTForCausalLM):
        model = load_model(model_or_path, HansardGPTForCausalLM)
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
    model = load_model(checkpoint, HansardGPTForCausalLM)
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
            (tmp / "README.md").write_text(model_card(run_dir, model.config, recipe, repo_id=repo_id))
    return out


def _hub_error(repo_id: str, error: Exception) -> OSError:
    """One line for a failed Hub call: a refused token, or a Hub that cannot be reached."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    if status in (401, 403):
        return OSError(f"{repo_id}: the Hub refused the token ({status}: {reason}): `hf auth login` with a token "
                       "that can write to it, then push again.")
    if status is not None:
        return OSError(f"{repo_id}: the Hub answered {status} ({reason}).")
    return OSError(f"{repo_id}: the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached "
                   f"({type(error).__name__}: {reason}); check the network (or HF_ENDPOINT) and push again.")


def hub_api(repo_id: str, token: str | None = None) -> HfApi:
    """An HfApi with a token the Hub accepts, checked before anything is staged: one clear error when offline,
    without a token, or when the Hub cannot be reached or refuses the token."""
    if constants.HF_HUB_OFFLINE:
        raise OSError(f"{repo_id}: HF_HUB_OFFLINE is set, so the Hub is not asked: unset it to push.")
    token = token or get_token()
    if not token:
        raise ValueError(f"{repo_id}: no Hugging Face token here: `hf auth login` (or set HF_TOKEN) with a "
                         "token that can write, then push again.")
    api = HfApi(token=token)
    try:
        api.whoami()  # the wire: is the token good?
    except Exception as error:  # noqa: BLE001 - httpx, huggingface_hub and OS errors: the message says which
        raise _hub_error(repo_id, error) from None
    return api


def upload(api: HfApi, folder, repo_id: str, private: bool = False) -> str:
    """The wire: create the repo if needed and upload the staged folder. Returns the commit URL."""
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload HansardGPT checkpoint")
    except Exception as error:  # noqa: BLE001 - as in hub_api
        raise _hub_error(repo_id, error) from None


def push(checkpoint, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """`hansard-hf push`: check the token and the Hub, stage a checkpoint (or finished run folder), upload it."""
    api = hub_api(repo_id, token)
    with tempfile.TemporaryDirectory() as staging:
        folder = stage_for_hub(checkpoint, Path(staging) / "repo", repo_id)
        return upload(api, folder, repo_id, private)

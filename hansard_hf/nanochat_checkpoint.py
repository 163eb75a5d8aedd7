"""Read karpathy/nanochat's own checkpoints (`model_<step>.pt` + `meta_<step>.json`) into HansardGPT.

Two architectures are read, told apart by the weights: nanochat Oct-Dec 2025 (no 2026 parts) and nanochat from
a825e63 (2026-03-14) to 92d63d4 (2026-07), the current one: value embeddings, sliding windows, lambdas, smear,
backout, q/k gain 1.2, RoPE base 100,000. Checkpoints from between (Jan-Mar 2026) had other gains, RoPE bases and
window sizes that the weights do not show, so they are refused rather than read wrongly. Every tensor must map:
a key left over, or a weight of ours not filled, stops the import and names the keys.
"""

import json
import re
from pathlib import Path

import torch
from transformers.initialization import no_init_weights

from .configuration_hansard_gpt import NANOCHAT_2026, VALUE_GATE_CHANNELS, HansardGPTConfig
from .files import atomic_directory
from .modeling_hansard_gpt import HansardGPTForCausalLM

# nanochat name -> ours, by pattern ({i}: layer index)
RENAMES = (
    (r"transformer\.wte\.weight", "model.embed_tokens.weight"),
    (r"transformer\.h\.(\d+)\.attn\.c_q\.weight", r"model.layers.\1.self_attn.q_proj.weight"),
    (r"transformer\.h\.(\d+)\.attn\.c_k\.weight", r"model.layers.\1.self_attn.k_proj.weight"),
    (r"transformer\.h\.(\d+)\.attn\.c_v\.weight", r"model.layers.\1.self_attn.v_proj.weight"),
    (r"transformer\.h\.(\d+)\.attn\.c_proj\.weight", r"model.layers.\1.self_attn.o_proj.weight"),
    (r"transformer\.h\.(\d+)\.attn\.ve_gate\.weight", r"model.layers.\1.self_attn.value_gate.weight"),
    (r"transformer\.h\.(\d+)\.mlp\.c_fc\.weight", r"model.layers.\1.mlp.fc1.weight"),
    (r"transformer\.h\.(\d+)\.mlp\.c_proj\.weight", r"model.layers.\1.mlp.fc2.weight"),
    (r"value_embeds\.(\d+)\.weight", r"model.layers.\1.self_attn.value_embed.weight"),
    (r"lm_head\.weight", "lm_head.weight"),
    (r"(resid_lambdas|x0_lambdas|smear_lambda|backout_lambda)", r"model.\1"),
    (r"smear_gate\.weight", "model.smear_gate.weight"),
)
# Present in every checkpoint of the current architecture (a825e63 .. 92d63d4), absent from 2025 ones.
CURRENT_PARTS = ("resid_lambdas", "x0_lambdas", "smear_gate.weight", "smear_lambda", "backout_lambda")
VOCAB_PADDED = ("model.embed_tokens.weight", "lm_head.weight", "value_embed.weight")


def is_nanochat_checkpoint(folder) -> bool:
    """Whether `folder` is a local folder holding nanochat's own `model_<step>.pt` files."""
    return Path(folder).is_dir() and any(Path(folder).glob("model_*.pt"))


def find_checkpoint(folder, step: int | None = None) -> tuple[Path, Path, int]:
    """`model_<step>.pt` and `meta_<step>.json` in `folder` (default: the highest step)."""
    folder = Path(folder)
    steps = sorted(int(m.group(1)) for f in folder.glob("model_*.pt") if (m := re.fullmatch(r"model_(\d+)\.pt", f.name)))
    if not steps:
        raise FileNotFoundError(f"{folder}: no nanochat model_<step>.pt here (nanochat writes them to "
                                "~/.cache/nanochat/base_checkpoints/<model_tag>/); pass that folder.")
    step = steps[-1] if step is None else step
    model, meta = folder / f"model_{step:06d}.pt", folder / f"meta_{step:06d}.json"
    for path in (model, meta):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (steps here: {steps}); pass --step with one of them.")
    return model, meta, step


def _architecture(state: dict) -> str:
    """"2025" or "2026" from the weights; refuses the Jan-Mar 2026 checkpoints in between."""
    present = [part for part in CURRENT_PARTS if part in state]
    gates = [v for k, v in state.items() if k.endswith("attn.ve_gate.weight")]
    if not present and not gates and not any(k.startswith("value_embeds.") for k in state):
        return "2025"
    if len(present) == len(CURRENT_PARTS) and gates and all(g.shape[1] == VALUE_GATE_CHANNELS for g in gates):
        return "2026"
    missing = [part for part in CURRENT_PARTS if part not in state]
    raise ValueError(
        f"This nanochat checkpoint is from between Jan and Mar 2026 (it has some 2026 parts but lacks {missing} or "
        f"has {gates[0].shape[1] if gates else 'no'}-channel value gates): its q/k gain, RoPE base and window sizes "
        "cannot be read off the weights. Supported: nanochat Oct-Dec 2025 and a825e63 (2026-03-14) to 92d63d4."
    )


def config_from_meta(model_config: dict, state: dict) -> HansardGPTConfig:
    """Our config for nanochat's `model_config` (from meta_<step>.json) and its weights."""
    fields = dict(
        vocab_size=model_config["vocab_size"],
        num_hidden_layers=model_config["n_layer"],
        hidden_size=model_config["n_embd"],
        num_attention_heads=model_config["n_head"],
        num_key_value_heads=model_config["n_kv_head"],
        intermediate_size=4 * model_config["n_embd"],
        max_position_embeddings=model_config["sequence_len"],
    )
    if _architecture(state) == "2026":
        fields.update(NANOCHAT_2026, layer_types=model_config.get("window_pattern", "L"))
    return HansardGPTConfig(**fields)


def convert_state_dict(state: dict, config: HansardGPTConfig) -> dict:
    """nanochat's tensors under our names, in fp32, with its vocabulary padding cut off."""
    converted, unmapped = {}, []
    for key, tensor in state.items():
        for pattern, replacement in RENAMES:
            if re.fullmatch(pattern, key):
                name = re.sub(pattern, replacement, key)
                if name.endswith(VOCAB_PADDED):
                    tensor = tensor[: config.vocab_size]
                converted[name] = tensor.float()
                break
        else:
            unmapped.append(key)
    if unmapped:
        more = f" and {len(unmapped) - 5} more" if len(unmapped) > 5 else ""
        raise ValueError(f"nanochat checkpoint: no HansardGPT weight for {unmapped[:5]}{more}; this import does not "
                         "know them (not a nanochat GPT?).")
    return converted


def read_state_dict(path) -> dict:
    """nanochat's `model_<step>.pt`: a dict of tensors, read without running anything pickled in it; anything else
    is one error naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no pickled code runs
    except Exception as error:  # noqa: BLE001 - torch raises many kinds, and its text suggests weights_only=False
        raise ValueError(f"{path}: not a file of tensors ({type(error).__name__}); it is damaged, or not nanochat's "
                         "model file. Nothing in it was run.") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not nanochat's state dict (names -> tensors).")
    return {str(key).removeprefix("_orig_mod."): tensor for key, tensor in state.items()}  # a compiled model's names


def load_nanochat_checkpoint(folder, step: int | None = None) -> HansardGPTForCausalLM:
    """A HansardGPTForCausalLM with the weights of nanochat's checkpoint in `folder` (default: its last step)."""
    model_path, meta_path, _ = find_checkpoint(folder, step)
    try:
        meta = json.loads(meta_path.read_text())
        model_config = meta["model_config"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{meta_path}: not a nanochat meta file with a model_config ({error}).") from None
    state = read_state_dict(model_path)
    try:
        config = config_from_meta(model_config, state)
    except (KeyError, TypeError) as error:
        raise ValueError(f"{meta_path}: its model_config lacks {error} (not nanochat's meta file?).") from None
    with no_init_weights():
        model = HansardGPTForCausalLM(config)
    weights = convert_state_dict(state, config)
    ours = model.state_dict()
    missing, extra = sorted(set(ours) - set(weights)), sorted(set(weights) - set(ours))
    wrong = [f"{k} {tuple(v.shape)} (ours {tuple(ours[k].shape)})" for k, v in weights.items()
             if k in ours and v.shape != ours[k].shape]
    if missing or extra or wrong:
        raise ValueError(f"{model_path}: cannot map completely; ours not filled {missing}, theirs without a place "
                         f"{extra}, wrong shapes {wrong}.")
    model.load_state_dict(weights, strict=True)
    return model.eval()


def import_nanochat(folder, out_dir, step: int | None = None, overwrite: bool = False) -> Path:
    """Write `out_dir` as a HansardGPT checkpoint (code included) from nanochat's checkpoint in `folder`."""
    model = load_nanochat_checkpoint(folder, step)
    with atomic_directory(out_dir, overwrite) as tmp:
        model.save_pretrained(tmp)
    return Path(out_dir)

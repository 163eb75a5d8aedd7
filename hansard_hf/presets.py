"""Named presets: nanochat's settings as functions of depth. A recipe names one (`"preset": "nanochat-2026"`) and
says only what it changes; tests and benches import them rather than retype them.

- `nanochat-2025`: nanochat 10231df (Dec 2025), which HansardGPTConfig's and HansardTrainingArguments' defaults
  follow: the preset adds only the depth.
- `nanochat-2026`: nanochat 92d63d4's architecture (`NANOCHAT_2026`) and optimizer (`NANOCHAT_2026_TRAINING`),
  with its transfer from depth 12 applied at this depth (`budget.nanochat_2026_scaling`): the batch, every LR but
  the smear's, and the Muon weight decay.
"""

from .budget import nanochat_2026_scaling
from .configuration_hansard_gpt import NANOCHAT_2026, HansardGPTConfig

# nanochat 92d63d4's model shape and optimizer settings at its reference, depth 12 (base_train's defaults).
NANOCHAT_2026_SHAPE = dict(aspect_ratio=64, head_dim=128)
NANOCHAT_2026_LRS = dict(matrix_lr=0.02, embedding_lr=0.3, unembedding_lr=0.008, scalar_lr=0.5)
NANOCHAT_2026_TRAINING = dict(
    target_param_data_ratio=12, parameter_count="scaling", adamw_groups="nanochat-2026", matrix_weight_decay=0.28,
    cautious_weight_decay=True, weight_decay_shape="cosine", muon_orthogonalizer="polar_express", muon_plus=True,
    normuon_beta2=0.9, momentum_warmup_steps=400, momentum_end=0.97, momentum_final=0.9, warmup_steps=40,
    warmdown_ratio=0.65, final_lr_frac=0.05, **NANOCHAT_2026_LRS)


def nanochat_2025(depth: int, vocab_size: int | None = None) -> dict:
    """nanochat 10231df at `depth`: the defaults are its settings."""
    return {"depth": depth}


def nanochat_2026(depth: int, vocab_size: int = 65536) -> dict:
    """nanochat 92d63d4 at `depth` (ratio 12): its architecture and optimizer, the batch, LRs and weight decay
    transferred from depth 12 by its rules (`vocab_size` counts in the scaling parameters)."""
    def scaling_parameters(at_depth: int) -> int:
        return HansardGPTConfig(depth=at_depth, vocab_size=vocab_size, **NANOCHAT_2026_SHAPE,
                                **NANOCHAT_2026).scaling_parameters()

    ratio = NANOCHAT_2026_TRAINING["target_param_data_ratio"]
    rule = nanochat_2026_scaling(scaling_parameters(depth), scaling_parameters(12), ratio)
    return {"architecture": "nanochat-2026", "depth": depth, **NANOCHAT_2026_SHAPE, **NANOCHAT_2026_TRAINING,
            "total_batch_size": rule["total_batch_size"], "matrix_weight_decay": rule["weight_decay"],
            **{key: lr * rule["lr_scale"] for key, lr in NANOCHAT_2026_LRS.items()}}


PRESETS = {"nanochat-2025": nanochat_2025, "nanochat-2026": nanochat_2026}


def preset(name: str, depth: int, vocab_size: int | None = None) -> dict:
    """The recipe keys of the preset `name` at `depth`."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r}: use one of {sorted(PRESETS)}.")
    return PRESETS[name](depth, **({"vocab_size": vocab_size} if vocab_size else {}))

"""The settings that name one of a few choices, as `Literal` types, and the one check of such a setting."""

from typing import Literal, get_args

AdamWGroups = Literal["nanochat-2025", "nanochat-2026"]  # the embedding's and lm_head's betas and weight decay
Orthogonalizer = Literal["newton_schulz", "polar_express"]  # Muon's: nanochat 10231df's, or nanochat 2026's
NsDtype = Literal["auto", "bfloat16", "float32"]  # the orthogonalizer's dtype ("auto": bf16 on CUDA, else fp32)
WarmdownShape = Literal["linear", "cosine"]
WeightDecayShape = Literal["constant", "cosine"]
ParameterCount = Literal["all", "scaling"]  # what target_param_data_ratio counts
Initialization = Literal["nanochat-2025", "nanochat-2026"]


def check_choice(name: str, value, choices) -> None:
    """A ValueError naming the setting and its choices unless `value` is one of `choices` (a Literal or a tuple)."""
    allowed = get_args(choices) or tuple(choices)
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: use one of {list(allowed)}.")

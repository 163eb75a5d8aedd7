"""HansardGPT in transformers' Auto classes, so AutoConfig / AutoModel / AutoModelForCausalLM load our checkpoints
with this package's code (no trust_remote_code)."""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_hansard_gpt import HansardGPTConfig
from .modeling_hansard_gpt import HansardGPTForCausalLM, HansardGPTModel


def register() -> None:
    """Register HansardGPT with the Auto classes (idempotent)."""
    AutoConfig.register(HansardGPTConfig.model_type, HansardGPTConfig, exist_ok=True)
    AutoModel.register(HansardGPTConfig, HansardGPTModel, exist_ok=True)
    AutoModelForCausalLM.register(HansardGPTConfig, HansardGPTForCausalLM, exist_ok=True)

"""hansard-hf: pretrain nanochat-style GPT models on Hansard with the Hugging Face stack.

Importing the package registers HansardGPT with AutoConfig, AutoModel and AutoModelForCausalLM.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_hansard_gpt import HansardGPTConfig
from .hub import export_to_nanochat, load_from_nanochat
from .modeling_hansard_gpt import HansardGPTForCausalLM, HansardGPTModel, HansardGPTPreTrainedModel
from .optimization import MuonAdamW
from .trainer import HansardTrainer, HansardTrainingArguments

AutoConfig.register(HansardGPTConfig.model_type, HansardGPTConfig, exist_ok=True)
AutoModel.register(HansardGPTConfig, HansardGPTModel, exist_ok=True)
AutoModelForCausalLM.register(HansardGPTConfig, HansardGPTForCausalLM, exist_ok=True)

__all__ = [
    "HansardGPTConfig",
    "HansardGPTForCausalLM",
    "HansardGPTModel",
    "HansardGPTPreTrainedModel",
    "HansardTrainer",
    "HansardTrainingArguments",
    "MuonAdamW",
    "export_to_nanochat",
    "load_from_nanochat",
]

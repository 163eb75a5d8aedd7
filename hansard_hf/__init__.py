"""hansard-hf: pretrain nanochat-style GPT models on Hansard with the Hugging Face stack.

The names below load on first use, so the `hansard-hf` command starts without importing torch. Using any of them
(`from hansard_hf import HansardGPTForCausalLM`, `hansard_hf.HansardGPTConfig`, ...) also registers HansardGPT with
AutoConfig, AutoModel and AutoModelForCausalLM (`hansard_hf.auto.register`).
"""

import importlib

_MODULE_OF = {
    "HansardGPTConfig": "configuration_hansard_gpt",
    "HansardGPTForCausalLM": "modeling_hansard_gpt",
    "HansardGPTModel": "modeling_hansard_gpt",
    "HansardGPTPreTrainedModel": "modeling_hansard_gpt",
    "HansardTrainer": "trainer",
    "HansardTrainingArguments": "arguments",
    "MuonAdamW": "optimization",
    "export_to_nanochat": "hub",
    "load_from_nanochat": "hub",
    "register": "auto",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(".auto", __name__).register()
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value  # loaded once
    return value


def __dir__():
    return sorted(list(globals()) + __all__)

"""Model card and training curves of a run, from the Trainer's `trainer_state.json`."""

import json
from pathlib import Path

PLOT_FILE = "training_curves.png"
MACHINE_LOCAL_KEYS = ("output_dir", "tokenizer_dir", "data_dir", "logging_dir")  # left out of a card's recipe


def trainer_state(run_dir) -> dict:
    """The newest `trainer_state.json` of a run: the folder's own, else its latest complete checkpoint's."""
    from .checkpoints import last_complete_checkpoint

    run_dir = Path(run_dir)
    checkpoint = last_complete_checkpoint(run_dir)
    for candidate in (run_dir / "trainer_state.json", checkpoint / "trainer_state.json" if checkpoint else None):
        if candidate is not None and candidate.exists():
            try:
                return json.loads(candidate.read_text())
            except ValueError as error:
                raise ValueError(f"{candidate} is damaged ({error}): delete it to use the latest checkpoint's, or "
                                 "train again to rewrite it.") from None
    raise FileNotFoundError(f"{run_dir}: no trainer_state.json here or in a complete checkpoint (not a training run?).")


def curves(state: dict) -> dict[str, list[tuple[int, float]]]:
    """(step, value) series of the training loss and the validation loss / bits per byte."""
    series = {"loss": [], "eval_loss": [], "eval_bpb": []}
    for entry in state.get("log_history", []):
        for key in series:
            if key in entry:
                series[key].append((entry["step"], entry[key]))
    return series


def plot(run_dir, out=None) -> Path:
    """Draw the training loss and validation bpb curves of a run to a PNG (default: RUN_DIR/training_curves.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = curves(trainer_state(run_dir))
    if not series["loss"]:
        raise ValueError(f"{run_dir}: the run has logged no training loss yet.")
    figure, loss_axis = plt.subplots(figsize=(8, 4.5), dpi=120)
    steps, values = zip(*series["loss"])
    loss_axis.plot(steps, values, color="tab:blue", label="train loss")
    if series["eval_loss"]:
        loss_axis.plot(*zip(*series["eval_loss"]), "o-", color="tab:green", label="validation loss")
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("loss (nats/token)")
    handles, labels = loss_axis.get_legend_handles_labels()
    if series["eval_bpb"]:
        bpb_axis = loss_axis.twinx()
        bpb_axis.plot(*zip(*series["eval_bpb"]), "s--", color="tab:red", label="validation bits per byte")
        bpb_axis.set_ylabel("bits per byte")
        more_handles, more_labels = bpb_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    loss_axis.legend(handles, labels, loc="upper right")
    loss_axis.set_title(f"{Path(run_dir).resolve().name}: training curves")
    figure.tight_layout()
    out = Path(out) if out is not None else Path(run_dir) / PLOT_FILE
    figure.savefig(out)
    plt.close(figure)
    return out


def figures(run_dir, config, batch: int | None, dataset: str, hub_dataset: bool) -> list[tuple[str, str]]:
    """The card's table: corpus, architecture, parameters, steps, tokens, and each figure with what it was measured
    on (`0.1234 (test split, 500 examples)`)."""
    state = trainer_state(run_dir)
    history = state.get("log_history", [])
    last = lambda key: next((e[key] for e in reversed(history) if key in e), None)  # noqa: E731
    tokens = state.get("global_step", 0) * batch if batch else None
    features = config.features_2026()

    def measured(key: str, count_key: str, where: str, unit: str) -> str:
        value, count = last(key), last(count_key)
        return "not measured" if value is None else f"{value:.4f} ({where}{f', {count:,} {unit}' if count else ''})"

    return [
        ("training corpus", f"[{dataset}](https://huggingface.co/datasets/{dataset})" if hub_dataset else
                            f"local files `{Path(dataset).name}` (not on the Hub)"),
        ("architecture", f"nanochat GPT, depth {config.num_hidden_layers}, width {config.hidden_size}, "
                         f"{config.num_attention_heads} heads, vocab {config.vocab_size:,}"
                         + (f"; nanochat 2026: {', '.join(features)}" if features else "")),
        ("parameters", f"{config.num_parameters():,}"),
        ("training steps", f"{state.get('global_step', 0):,}"),
        ("tokens seen", f"{tokens:,}" if tokens else "unknown"),
        ("bits per byte", measured("eval_bpb", "eval_tokens", "validation split", "tokens")),
        ("CORE (centred)", measured("core_metric", "core_examples", "CORE bundle", "examples")),
        ("Hansard benchmark (centred)", measured("hansard_metric", "hansard_examples", "test split", "examples")),
    ]


def samples_section(run_dir) -> str:
    """The card's greedy samples, when the run kept some."""
    from .evaluation import SAMPLES_FILE

    samples_file = Path(run_dir) / SAMPLES_FILE
    if not samples_file.exists():
        return ""
    saved = json.loads(samples_file.read_text())
    return f"\n## Greedy samples (step {saved['step']})\n\n" + "\n".join(
        f"- {json.dumps(prompt)} -> {json.dumps(text)}" for prompt, text in saved["samples"].items()) + "\n"


def model_card(run_dir, config, recipe: dict | None = None, total_batch_size: int | None = None,
               repo_id: str | None = None) -> str:
    """README.md of a run folder or Hub repo: recipe, parameters, tokens seen, validation bpb, CORE when measured,
    curves, and usage code that loads `repo_id` or, for a folder, the folder by its name (right on any machine: the
    card never holds the absolute path of the machine that wrote it)."""
    import transformers

    from .data import is_hub_dataset
    from .locations import DEFAULT_DATASET
    from .modeling_hansard_gpt import TESTED_TRANSFORMERS

    recipe = recipe or {}
    dataset = str(recipe.get("dataset", DEFAULT_DATASET))
    hub_dataset, features = is_hub_dataset(dataset), config.features_2026()
    rows = figures(run_dir, config, total_batch_size or recipe.get("total_batch_size"), dataset, hub_dataset)
    samples = samples_section(run_dir)
    model_id = repo_id or Path(run_dir).resolve().name
    where = "" if repo_id else "  # this folder: its path from where you run this (or its Hub repo id once pushed)"
    compatibility = (
        f"This model uses parts of nanochat's 2026 architecture ({', '.join(features)}) that transformers' own "
        "`NanoChat` class does not have, so the shipped code is the way to load it (`hansard-hf export` refuses it)."
        if features else
        "The version-proof route is transformers' own class, which needs no custom code and moves with transformers' "
        f"releases: hansard-hf (the project that trained this model; not on PyPI, install it from its source) "
        f"converts it with `hansard-hf export {model_id} nanochat-out`, a `NanoChatForCausalLM` checkpoint with "
        'identical logits that `AutoModelForCausalLM.from_pretrained("nanochat-out")` loads, tokenizer included.')
    shown = {k: (Path(v).name if k == "dataset" and not hub_dataset else v) for k, v in recipe.items()
             if k not in MACHINE_LOCAL_KEYS}  # where things were on the machine that trained it: not the reader's
    recipe_lines = "\n".join(f"    {json.dumps(k)}: {json.dumps(v)}," for k, v in shown.items()).rstrip(",")
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [hansard_hf, nanochat, custom_code, hansard]
{f"datasets: [{dataset}]{chr(10)}" if hub_dataset else ""}---

# {Path(model_id).name}

A nanochat-style GPT pretrained on UK parliamentary debate (Hansard) with hansard-hf (Hugging Face Trainer,
Muon + AdamW, nanochat's schedules, Chinchilla-sized runs).

| | |
|---|---|
{chr(10).join(f"| {name} | {value} |" for name, value in rows)}

![training curves]({PLOT_FILE})

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "{model_id}"{where}
tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(model_id, trust_remote_code=True)
inputs = tokenizer("<|bos|>Mr. Speaker, I beg to move", return_tensors="pt", add_special_tokens=False)
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=40, do_sample=False)[0]))
```

`trust_remote_code=True` runs this repo's `configuration_hansard_gpt.py` and `modeling_hansard_gpt.py`; the
tokenizer needs it too, because `AutoTokenizer` reads the model's `config.json` first.

## Compatibility

The code shipped here is tested with transformers {TESTED_TRANSFORMERS[0]} to {TESTED_TRANSFORMERS[1]} (it was saved with
{transformers.__version__}). {compatibility}
{samples}
## Recipe

```json
{{
{recipe_lines}
}}
```
"""

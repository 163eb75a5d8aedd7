"""Recipe: a JSON file -> model config + training arguments + data sources, and the plan they imply.

A recipe is a plain JSON object of the keys below plus any `HansardTrainingArguments` field; overrides come in the
seed's `--key=value` form (values parsed as JSON where they parse, else kept as strings). An unknown key is an error
that names it. `Recipe.load` reads and checks a recipe once; what it implies (settings with their defaults, corpus,
folders) is derived once, on first use, from the frozen result.
"""

import dataclasses
import difflib
import importlib.resources
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from . import locations
from .budget import PEAK_FLOPS, STEP_SETTINGS, step_plan
from .configuration_hansard_gpt import NANOCHAT_2026, HansardGPTConfig
from .data import Corpus
from .locations import TOKENIZER_SETTINGS
from .presets import preset
from .memory import checkpoint_bytes, checkpointed_layers, checkpointing_to_fit, training_bytes
from .arguments import HansardTrainingArguments

MODEL_KEYS = {"depth", "aspect_ratio", "head_dim", "vocab_size", "num_key_value_heads", "loss_chunk_size", "architecture",
              "layer_types", "sliding_window", "value_embeddings", "residual_lambdas", "smear", "backout", "qk_gain",
              "rope_theta", "initialization"}
# `architecture`: a named set of model keys that the recipe's own model keys override
ARCHITECTURES = {"nanochat-2025": {}, "nanochat-2026": NANOCHAT_2026}
CORPUS_KEYS = {"dataset": "source", "text_field": "text_field", "id_field": "id_field", "split_field": "split_field",
               "max_documents": "max_documents", "bodies": "bodies", "since": "since", "before": "before",
               "languages": "languages", "validation_from": "validation_from", "test_from": "test_from",
               "dedup": "dedup"}  # recipe key -> Corpus field (the defaults are Corpus')
DATA_KEYS = {*CORPUS_KEYS, "tokenizer", "tokenizer_vocab_size", "tokenizer_max_chars", "tokenizer_dir", "data_dir"}
RUN_KEYS = {"run", "allow_slow_cpu", "preset"}  # allow_slow_cpu: start a run the plan says takes over a day on this CPU
# preset: nanochat's settings at the recipe's depth (`presets.py`), under the recipe's own keys
TRAINING_DEFAULTS = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                     for f in dataclasses.fields(HansardTrainingArguments)
                     if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
TRAINING_KEYS = {f.name for f in dataclasses.fields(HansardTrainingArguments)}
HANSARD_TOKENIZER = "hansard"  # the `tokenizer` value (and default) that means: train ours on the corpus
DISABLED_RUNS = {"", "dummy"}


def parse_overrides(arguments: list[str]) -> dict:
    """`--key=value` strings -> {key: value}; values are JSON where they parse (numbers, true, null, ...)."""
    overrides = {}
    for argument in arguments:
        if not argument.startswith("--") or "=" not in argument:
            raise ValueError(f"override {argument!r}: write it as --key=value (a switch: {argument}=true)")
        key, value = argument[2:].split("=", 1)
        try:
            overrides[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.replace("-", "_")] = value
    return overrides


def shipped_recipes() -> dict[str, Path]:
    """The recipes installed with the package, by name (d16, d24, d36, d48, d80, tiny)."""
    folder = importlib.resources.files("hansard_hf.recipes")
    return {Path(item.name).stem: Path(str(item)) for item in folder.iterdir() if item.name.endswith(".json")}


def find_recipe(name) -> Path:
    """A recipe file: `name` itself when it is a file (a path always wins), else the shipped recipe it names:
    `d24`, `d24.json` or `recipes/d24.json`. A run folder means its recipe.json."""
    path = Path(name)
    if path.is_dir() and (path / "recipe.json").is_file():
        return path / "recipe.json"
    if path.is_file():
        return path
    shipped = shipped_recipes()
    stem = path.name.removesuffix(".json")
    if path.parent in (Path("."), Path("recipes")) and stem in shipped:
        return shipped[stem]
    guess = difflib.get_close_matches(stem, shipped, n=1)
    raise FileNotFoundError(f"{name}: no such recipe file or shipped recipe{f' (did you mean {guess[0]}?)' if guess else ''}; "
                            f"the shipped recipes are {sorted(shipped)}, or give a path to a recipe JSON.")

@dataclass(frozen=True)
class Recipe:
    """Everything a run needs, read from a recipe file (plus overrides) and checked once by `Recipe.load`."""

    path: str  # the recipe file read
    values: Mapping[str, Any]  # its keys and the overrides, as given (read-only)
    origin: str = ""  # the recipe a run folder's recipe.json came from (else path)

    @classmethod
    def load(cls, path, overrides: list[str] | dict | None = None) -> "Recipe":
        """Read a recipe file or shipped recipe (`find_recipe`), apply `overrides` and check every key."""
        given, path = path, find_recipe(path)
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from error
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a recipe is a JSON object of keys and values.")
        origin = str(values.pop("recipe", path))  # a run folder's recipe.json names the recipe it came from
        if path.name == "recipe.json" and Path(given).is_dir():  # a run folder is its own output_dir, wherever it is
            values["output_dir"] = str(Path(given))
        values.update(parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {}))
        if "preset" in values:
            if "depth" not in values:
                raise ValueError(f"{path}: preset={values['preset']!r} is a function of depth: give the recipe a depth.")
            try:
                values = {**preset(values["preset"], values["depth"], values.get("vocab_size")), **values}
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
        known = MODEL_KEYS | DATA_KEYS | RUN_KEYS | TRAINING_KEYS
        unknown = sorted(set(values) - known)
        if unknown:
            guesses = {key: difflib.get_close_matches(key, known, n=1) for key in unknown}
            hints = "; ".join(f"did you mean {guess[0]!r} for {key!r}?" for key, guess in guesses.items() if guess)
            raise ValueError(
                f"{path}: unknown key(s) {unknown}. {hints + ' ' if hints else ''}A recipe takes "
                f"{sorted(MODEL_KEYS | DATA_KEYS | RUN_KEYS)} and any HansardTrainingArguments field."
            )
        recipe = cls(str(path), MappingProxyType(values), origin)
        try:
            recipe.model_config()
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: the model keys {sorted(MODEL_KEYS & set(values))} do not make a model: {error}")
        return recipe

    @cached_property
    def settings(self) -> Mapping[str, Any]:
        """Every HansardTrainingArguments setting of the run: the recipe's, else the argument's default."""
        return MappingProxyType({**TRAINING_DEFAULTS, **{k: v for k, v in self.values.items() if k in TRAINING_KEYS}})

    @cached_property
    def run(self) -> str:
        """The run name (wandb, output folder); "dummy" or none disables tracking."""
        return str(self.values.get("run") or "")

    @property
    def tracking(self) -> bool:
        return self.run not in DISABLED_RUNS

    def model_config(self, vocab_size: int | None = None, **token_ids) -> HansardGPTConfig:
        """The model: the recipe's `architecture` (nanochat-2025 by default, or nanochat-2026) with its model keys
        over it (else the config's defaults), `vocab_size` unless the recipe sets it."""
        model = {k: v for k, v in self.values.items() if k in MODEL_KEYS}
        architecture = model.pop("architecture", "nanochat-2025")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture={architecture!r}: use one of {sorted(ARCHITECTURES)}.")
        model = {**ARCHITECTURES[architecture], **model}
        if vocab_size:
            model.setdefault("vocab_size", vocab_size)
        return HansardGPTConfig(max_position_embeddings=self.settings["max_seq_len"], **model, **token_ids)

    def report_to(self) -> list[str]:
        """The trackers: the recipe's `report_to`, else wandb for a named run; none for a "dummy" or unnamed run."""
        if not self.tracking:
            return ["none"]
        value = self.values.get("report_to", "wandb")
        return [value] if isinstance(value, str) else list(value)

    @cached_property
    def output_dir(self) -> Path:
        """The recipe's `output_dir`, else runs/<run name> (runs/<recipe file name> for an unnamed run)."""
        return Path(self.values.get("output_dir") or locations.run_dir(self.run if self.tracking else Path(self.path).stem))

    def training_arguments(self, **extra) -> HansardTrainingArguments:
        values = {k: v for k, v in self.values.items() if k in TRAINING_KEYS}
        values.update(output_dir=str(self.output_dir), report_to=self.report_to(),
                      run_name=values.get("run_name") or (self.run if self.tracking else None))
        return HansardTrainingArguments(**{**values, **extra})

    @cached_property
    def corpus(self) -> Corpus:
        try:
            return Corpus(**{field: self.values[key] for key, field in CORPUS_KEYS.items() if key in self.values})
        except ValueError as error:
            raise ValueError(f"{self.path}: {error}") from None

    @cached_property
    def tokenizer_settings(self) -> Mapping[str, Any]:
        """How the Hansard tokenizer of this recipe is trained (see locations.TOKENIZER_SETTINGS)."""
        v = self.values
        return MappingProxyType({"vocab_size": v.get("tokenizer_vocab_size", TOKENIZER_SETTINGS["vocab_size"]),
                                 "max_chars": v.get("tokenizer_max_chars", TOKENIZER_SETTINGS["max_chars"])})

    @cached_property
    def trains_tokenizer(self) -> bool:
        """The run trains the Hansard tokenizer when its folder has none (no other tokenizer or folder named)."""
        return self.values.get("tokenizer", HANSARD_TOKENIZER) == HANSARD_TOKENIZER and "tokenizer_dir" not in self.values

    @cached_property
    def tokenizer_dir(self) -> Path:
        """Where the tokenizer is (or will be trained): recipe's `tokenizer_dir`, a given path/Hub id, or ours."""
        v = self.values
        if "tokenizer_dir" in v:
            return Path(v["tokenizer_dir"])
        if not self.trains_tokenizer:
            return Path(v["tokenizer"])
        return locations.tokenizer_dir(self.corpus, **self.tokenizer_settings)

    @cached_property
    def data_dir(self) -> Path:
        """The recipe's `data_dir`, else the default folder for its corpus and tokenizer (which must exist)."""
        if "data_dir" in self.values:
            return Path(self.values["data_dir"])
        return locations.data_dir(self.corpus, self.tokenizer_dir)

    def to_dict(self) -> dict:
        return {"recipe": self.origin or self.path, **self.values}


def plan(recipe: Recipe, gpus: int = 8, gpu: str = "H100", mfu: float = 0.45, gpu_memory_gb: float = 85) -> dict:
    """Parameters, tokens, steps, the micro-batch used (`step_plan`, as the Trainer does), FLOPs, the wall time at
    `mfu`, and per layout (DDP: a whole model per GPU; FSDP2: the state divided among the `gpus`) the activation
    checkpointing that fits `gpu_memory_gb` with its peak memory estimate; `layout` is the first that fits."""
    peak = PEAK_FLOPS.get(gpu)
    if peak is None:
        raise ValueError(f"--gpu {gpu!r}: unknown; use one of {list(PEAK_FLOPS)}.")
    config, s = recipe.model_config(), recipe.settings
    seq, total, params = s["max_seq_len"], s["total_batch_size"], config.num_parameters()
    try:
        steps = step_plan(**{**{k: s[k] for k in STEP_SETTINGS}, "strict_batch_size": False}, config=config,
                          world_size=gpus)
    except ValueError as error:
        raise ValueError(f"{recipe.path}, planned for {gpus} GPUs (--gpus): {error}") from None
    tokens = steps.steps * total
    flops = config.flops_per_token(seq) * tokens
    micro = steps.device_batch_size
    memory = {}
    for layout, shards in (("DDP", 1), ("FSDP2", gpus)):
        every = checkpointing_to_fit(config, micro, seq, gpu_memory_gb * 1e9, shards)
        used = 1 if every is None else every  # None: not even full checkpointing fits
        memory[layout] = dict(every_n_layers=every, checkpointed_layers=checkpointed_layers(config.num_hidden_layers, used),
                              memory_gb=training_bytes(config, micro, seq, used, shards) / 1e9)
    fitting = [layout for layout, m in memory.items() if m["every_n_layers"] is not None]
    hours = flops / (gpus * peak * mfu) / 3600
    every, limit, clock = s["save_every"], s["save_total_limit"], s["save_every_minutes"]
    interval = hours * 60 * every / steps.steps if every > 0 else 0.0  # minutes between step checkpoints
    if every > 0 and 0 < clock < interval:  # the clock saves sooner: every save_every_minutes
        interval = clock
    kept = -(-steps.steps // every) if every > 0 else 0  # every save_every steps, and at the last step
    saved = max(kept, math.ceil(hours * 60 / interval)) if every > 0 else 0  # with the clock's interim ones
    kept = min(kept, limit) if limit and limit > 0 else kept  # an interim one goes once a newer one is complete
    return dict(depth=config.depth, width=config.hidden_size, heads=config.num_attention_heads, params=params,
                counted=steps.counted_parameters, parameter_count=s["parameter_count"], features=config.features_2026(),
                tokens=tokens, steps=steps.steps, device_batch_size=micro,
                requested_device_batch_size=s["device_batch_size"], accumulation=steps.accumulation,
                flops_per_token=config.flops_per_token(seq), total_flops=flops, memory=memory,
                layout=fitting[0] if fitting else None, gpu_memory_gb=gpu_memory_gb, gpus=gpus, gpu=gpu, mfu=mfu,
                hours=hours, save_every=every, save_every_minutes=clock, save_interval_minutes=interval,
                save_total_limit=limit, checkpoints_saved=saved, checkpoints_kept=kept, checkpoint_bytes=checkpoint_bytes(config),
                model_bytes=4 * params, kept_bytes=kept * checkpoint_bytes(config) + 4 * params)


def memory_text(p: dict, layout: str) -> str:
    """A layout's activation checkpointing and peak memory per GPU, in words."""
    m = p["memory"][layout]
    if m["every_n_layers"] == 0:
        return f"no checkpointing, {m['memory_gb']:.0f} GB"
    text = f"{m['checkpointed_layers']} of {p['depth']} layers checkpointed, {m['memory_gb']:.0f} GB"
    return text if m["every_n_layers"] is not None else text + ": does not fit"


def plan_table(recipes: list[Recipe], gpus: int = 8, gpu: str = "H100", mfu: float = 0.45,
               gpu_memory_gb: float = 85) -> str:
    """A markdown table of `plan` for several recipes (the README's recipe table)."""
    lines = ["| recipe | width | heads | params | tokens | steps | micro-batch (asked) x accum | FLOPs/token | "
             f"total FLOPs | DDP: memory/GPU (of {gpu_memory_gb:.0f} GB) | FSDP2 over {gpus} GPUs | needs | "
             f"hours on {gpus}x{gpu} at {mfu:.0%} MFU |", "|" + "---|" * 13]
    for recipe in recipes:
        p = plan(recipe, gpus, gpu, mfu, gpu_memory_gb)
        lines.append(
            f"| {Path(recipe.path).stem} | {p['width']} | {p['heads']} | {p['params']:,} | {p['tokens'] / 1e9:.2f}B | "
            f"{p['steps']:,} | {p['device_batch_size']} ({p['requested_device_batch_size']}) x {p['accumulation']} | "
            f"{p['flops_per_token']:.3g} | {p['total_flops']:.3g} | {memory_text(p, 'DDP')} | "
            f"{memory_text(p, 'FSDP2')} | {p['layout'] or 'more GPUs'} | {p['hours']:.1f} |"
        )
    return "\n".join(lines)


def describe_plan(p: dict) -> str:
    """The text `hansard-hf plan` prints for one recipe."""
    adjusted = ("" if p["device_batch_size"] == p["requested_device_batch_size"] else
                f" (asked {p['requested_device_batch_size']}: it does not divide the batch, so lowered)")
    config = {"DDP": "accelerate_config.yaml", "FSDP2": "accelerate_fsdp2.yaml"}
    needs = (f"{p['layout']} (accelerate launch --config_file {config[p['layout']]} ...)" if p["layout"] else
             f"neither fits {p['gpus']} GPUs of {p['gpu_memory_gb']:.0f} GB: more GPUs or a smaller device_batch_size")
    counted = ("" if p["parameter_count"] == "all" else
               f" ({p['counted']:,} counted for the token budget: block matrices + lm_head)")
    lines = [f"model        d{p['depth']}: width {p['width']}, {p['heads']} heads, {p['params']:,} parameters{counted}"]
    if p["features"]:
        lines.append(f"2026 parts   {', '.join(p['features'])}")
    return "\n".join(lines + [
        f"tokens       {p['tokens']:,} in {p['steps']:,} steps",
        f"batch        {p['device_batch_size']} rows per GPU{adjusted} x {p['accumulation']} accumulation x {p['gpus']} GPUs",
        f"FLOPs        {p['flops_per_token']:.3g} per token, {p['total_flops']:.3g} in total",
        f"memory       peak per GPU of {p['gpu_memory_gb']:.0f} GB (estimate, bf16): DDP {memory_text(p, 'DDP')}; "
        f"FSDP2 {memory_text(p, 'FSDP2')}",
        f"layout       {needs}",
        f"time         ~{p['hours']:.1f} h on {p['gpus']}x {p['gpu']} at {p['mfu']:.0%} MFU "
        f"({p['hours'] * p['gpus']:,.1f} GPU-hours)",
        f"disk         {checkpoints_text(p)}",
        *([f"saving       {stall_text(p)}"] if p["checkpoints_saved"] else []),
    ])


def stall_text(p: dict) -> str:
    """How often a run saves and how long the saves stop training (the Trainer saves synchronously), at 1 GB/s."""
    from .progress import duration

    seconds = p["checkpoint_bytes"] / SAVE_BYTES_PER_SECOND
    total = seconds * p["checkpoints_saved"]
    held = f"~{total / p['hours']:.0f} s per hour" if p["hours"] >= 1 else f"~{total:.0f} s in all"
    return (f"a checkpoint every ~{duration(60 * p['save_interval_minutes'])} (save_every={p['save_every']:,} steps, "
            f"save_every_minutes={p['save_every_minutes']:g}); each stops training ~{seconds:.0f} s at 1 GB/s: {held}")


SAVE_BYTES_PER_SECOND = 1e9  # a GPU node's local NVMe or parallel filesystem, writing a checkpoint (an assumption)


def checkpoints_text(p: dict) -> str:
    """What a run keeps on disk, in words: its checkpoints (with the rotation that applies) and the final model."""
    gb = lambda n: f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.0f} MB"  # noqa: E731
    if not p["checkpoints_saved"]:
        return f"{gb(p['kept_bytes'])}: the final model only (save_every=0: no checkpoints)"
    regular = -(-p["steps"] // p["save_every"])
    rotation = (f"save_total_limit={p['save_total_limit']} keeps the newest {p['checkpoints_kept']}"
                if p["checkpoints_kept"] < regular else
                f"save_total_limit={p['save_total_limit'] or 'none'}: all {p['checkpoints_kept']} kept")
    interim = p["checkpoints_saved"] - regular
    clock = (f"; {interim} more by the clock, each replaced by the next" if interim > 0 else "")
    return (f"{gb(p['kept_bytes'])} at the end: a checkpoint of {gb(p['checkpoint_bytes'])} every "
            f"{p['save_every']:,} steps and at the last, {regular} in all ({rotation}{clock}), plus the final model "
            f"({gb(p['model_bytes'])})")

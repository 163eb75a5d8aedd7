"""Recipe: a JSON file -> model config + training arguments + data sources, and the plan they imply.

A recipe is a plain JSON object of the keys below plus any training setting (`hansard_hf.settings`, by its own name)
or other `TrainingArguments` field; overrides come in the seed's `--key=value` form (values parsed as JSON where they parse, else kept as strings). An unknown key is an error
that names it. `Recipe.load` reads and checks a recipe once; what it implies (settings with their defaults, corpus,
folders) is derived once, on first use, from the frozen result.
"""

import dataclasses
import difflib
import importlib.resources
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from . import locations
from .configuration_hansard_gpt import NANOCHAT_2026, HansardGPTConfig
from .data import Corpus
from .locations import TOKENIZER_SETTINGS
from .presets import preset
from .arguments import HansardTrainingArguments
from .settings import CONCERNS

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
# Training keys: our settings by their own names (flat, not by group) and every other TrainingArguments field
TRAINING_DEFAULTS = {**{f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                        for f in dataclasses.fields(HansardTrainingArguments) if f.name not in CONCERNS and
                        (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)},
                     **{f.name: f.default for group in CONCERNS.values() for f in dataclasses.fields(group)}}
TRAINING_KEYS = set(TRAINING_DEFAULTS) | {f.name for f in dataclasses.fields(HansardTrainingArguments)} - set(CONCERNS)
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
                f"{sorted(MODEL_KEYS | DATA_KEYS | RUN_KEYS)}, the training settings (hansard-hf train --help) and any "
                "TrainingArguments field."
            )
        recipe = cls(str(path), MappingProxyType(values), origin)
        try:
            recipe.model_config()
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: the model keys {sorted(MODEL_KEYS & set(values))} do not make a model: {error}")
        return recipe

    @cached_property
    def settings(self) -> Mapping[str, Any]:
        """Every training setting of the run by its flat name: the recipe's, else the default."""
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
        return HansardTrainingArguments.from_settings(**{**values, **extra})

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

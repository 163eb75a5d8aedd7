"""Recipes: the seed's four configurations, overrides, unknown keys, tracking switches and `hansard-hf plan`."""

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hansard_hf import HansardGPTConfig, HansardTrainingArguments
from hansard_hf.plan import plan
from hansard_hf.recipe import Recipe, parse_overrides
from hansard_hf.settings import CONCERNS

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SEED = {16: 96, 24: 64, 36: 32, 48: 24}
DESIGN = {16: (117_440_512, 4_480), 24: (270_532_608, 10_320), 36: (724_303_872, 27_630), 48: (1_560_281_088, 59_520)}


@pytest.mark.parametrize("depth", sorted(SEED))
def test_recipes_reproduce_the_seed_configurations(depth):
    recipe = Recipe.load(RECIPES / f"d{depth}.json")
    v = recipe.values
    assert (v["depth"], v["device_batch_size"], v["run"], v["tokenizer"], v["aspect_ratio"]) == (
        depth, SEED[depth], f"hansard_d{depth}", "hansard", 32)
    assert (v["max_seq_len"], v["total_batch_size"], v["target_param_data_ratio"]) == (2048, 524288, 20)
    assert (v["embedding_lr"], v["unembedding_lr"], v["matrix_lr"]) == (0.2, 0.004, 0.02)
    assert (v["warmup_ratio"], v["warmdown_ratio"], v["final_lr_frac"]) == (0.05, 0.2, 0.0)
    assert (v["eval_every"], v["core_metric_every"], v["save_every"]) == (250, 1000, 2000)
    p = plan(recipe, gpus=8)
    assert (p.params, p.steps) == DESIGN[depth]
    assert p.tokens == DESIGN[depth][1] * 524288
    assert p.device_batch_size * p.accumulation * 8 * 2048 == 524288


def test_plan_adjusts_indivisible_micro_batches():
    d16, d48 = Recipe.load(RECIPES / "d16.json"), Recipe.load(RECIPES / "d48.json")
    assert (plan(d16, gpus=1).device_batch_size, plan(d16, gpus=1).accumulation) == (64, 4)
    assert (plan(d48, gpus=8).device_batch_size, plan(d48, gpus=8).accumulation) == (16, 2)
    one = plan(d16, gpus=1, gpu="H100", mfu=0.5)
    assert one.hours == pytest.approx(one.total_flops / (989e12 * 0.5) / 3600)
    with pytest.raises(ValueError, match="unknown"):
        plan(d16, gpu="TPU")


def test_tiny_recipe_is_cpu_sized():
    tiny = Recipe.load(RECIPES / "tiny.json")
    p = plan(tiny, gpus=1)
    assert p.params < 10_000_000 and p.steps <= 200 and p.accumulation == 2


def test_overrides_and_unknown_keys(tmp_path):
    assert parse_overrides(["--max_steps=4", "--dataset=data/x.jsonl", "--bf16=false", "--run=dummy"]) == {
        "max_steps": 4, "dataset": "data/x.jsonl", "bf16": False, "run": "dummy"}
    with pytest.raises(ValueError, match="--key=value"):
        parse_overrides(["--max_steps", "4"])
    recipe = Recipe.load(RECIPES / "d24.json", ["--depth=12", "--max_steps=7"])
    assert recipe.model_config().depth == 12 and recipe.values["max_steps"] == 7
    (tmp_path / "bad.json").write_text(json.dumps({"depth": 4, "learning_rat": 0.1}))
    with pytest.raises(ValueError, match=r"bad.json: unknown key\(s\) \['learning_rat'\]"):
        Recipe.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['nope'\]"):
        Recipe.load(RECIPES / "d24.json", ["--nope=1"])
    with pytest.raises(FileNotFoundError, match="no such recipe"):
        Recipe.load(tmp_path / "missing.json")


def test_run_name_turns_tracking_on_and_dummy_off(tmp_path):
    named = Recipe.load(RECIPES / "tiny.json", {"report_to": "wandb", "output_dir": str(tmp_path)})
    args = named.training_arguments(use_cpu=True)
    assert args.report_to == ["wandb"] and args.run_name == "hansard_tiny"
    dummy = Recipe.load(RECIPES / "tiny.json", {"run": "dummy", "report_to": "wandb", "output_dir": str(tmp_path)})
    assert dummy.training_arguments(use_cpu=True).report_to == []  # "none": no tracking even when asked
    unnamed = Recipe.load(RECIPES / "d24.json", {"run": ""})
    assert not unnamed.tracking


def test_cli_plan_prints_the_table():
    done = subprocess.run([sys.executable, "-m", "hansard_hf.cli", "plan", "--markdown",
                           *(str(RECIPES / f"d{d}.json") for d in SEED)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "| d16 | 512 | 4 | 117,440,512 | 2.35B | 4,480 | 32 (96) x 1 |" in done.stdout
    assert "| d48 | 1536 | 12 | 1,560,281,088 | 31.21B | 59,520 | 16 (24) x 2 |" in done.stdout


@pytest.mark.parametrize("name, kind, processes, machines", [
    ("accelerate_config.yaml", "MULTI_GPU", 8, 1),
    ("accelerate_multinode.yaml", "MULTI_GPU", 16, 2),
    ("accelerate_fsdp2.yaml", "FSDP", 8, 1),
])
def test_accelerate_configs_load(name, kind, processes, machines):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(RECIPES.parent / name))
    assert (str(config.distributed_type).split(".")[-1], config.num_processes, config.num_machines) == (
        kind, processes, machines)
    assert str(config.mixed_precision).split(".")[-1].lower() == "bf16"
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2


def test_a_recipe_is_read_once_and_frozen(tmp_path):
    recipe = Recipe.load("tiny", {"dataset": str(tmp_path / "x.jsonl"), "split_field": "split"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.path = "other.json"
    with pytest.raises(TypeError):
        recipe.values["depth"] = 99  # read-only mapping
    assert recipe.corpus is recipe.corpus and recipe.tokenizer_dir is recipe.tokenizer_dir  # derived once
    assert (recipe.corpus.source, recipe.corpus.split_field, recipe.corpus.text_field) == (str(tmp_path / "x.jsonl"),
                                                                                         "split", "text")
    # every setting a recipe leaves out is the training argument's own default, stated there alone
    d24 = Recipe.load("d24", {"run": "", "max_steps": 3})
    args = HansardTrainingArguments(output_dir="unused")
    for name, group in (("total_batch_size", "budget"), ("max_seq_len", "budget"), ("target_param_data_ratio", "budget"),
                        ("eval_tokens", "evaluation"), ("use_cpu", None)):
        assert d24.settings[name] == getattr(getattr(args, group) if group else args, name)
    assert d24.settings["max_steps"] == 3
    assert d24.model_config().vocab_size == HansardGPTConfig().vocab_size


def test_bad_model_keys_fail_when_the_recipe_is_read(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"depth": 4, "num_key_value_heads": 3}))
    with pytest.raises(ValueError, match=r"bad.json: the model keys \[.depth., .num_key_value_heads.\] do not make a model"):
        Recipe.load(tmp_path / "bad.json")


@pytest.mark.parametrize("world_size", [1, 2, 8])
def test_the_plan_and_the_trainer_take_the_same_steps_and_batch(tmp_path, monkeypatch, world_size):
    """`hansard-hf plan` and HansardTrainingArguments.resolve both ask budget.step_plan: same numbers, any world."""
    recipe = Recipe.load("tiny", {"output_dir": str(tmp_path), "device_batch_size": 5})
    p = plan(recipe, gpus=world_size)
    args = recipe.training_arguments(use_cpu=True)
    monkeypatch.setattr(HansardTrainingArguments, "world_size", property(lambda self: world_size))  # as launched
    args.resolve(recipe.model_config())
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.max_steps) == (
        p.device_batch_size, p.accumulation, p.steps)
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size * args.budget.max_seq_len == \
        recipe.settings["total_batch_size"]


def test_a_preset_is_a_function_of_depth_under_the_recipes_own_keys(tmp_path):
    """`preset` expands to nanochat's settings at the recipe's depth (after overrides); the recipe's keys win."""
    from hansard_hf.presets import NANOCHAT_2026_TRAINING, preset

    d24 = Recipe.load("d24-2026")
    assert d24.values["total_batch_size"] == 2**20 and d24.values["matrix_lr"] == pytest.approx(0.02 * 2**0.5)
    at_12 = Recipe.load("d24-2026", ["--depth=12"])  # nanochat's reference depth: nothing is scaled
    assert at_12.values["total_batch_size"] == 2**19 and at_12.values["matrix_lr"] == 0.02
    assert at_12.values["matrix_weight_decay"] == pytest.approx(NANOCHAT_2026_TRAINING["matrix_weight_decay"])
    assert Recipe.load("d24-2026", ["--matrix_lr=0.05"]).settings["matrix_lr"] == 0.05
    assert preset("nanochat-2025", 20) == {"depth": 20}
    for values, message in (({"preset": "nanochat-2026"}, "is a function of depth: give the recipe a depth"),
                            ({"preset": "nanochat-2027", "depth": 4}, r"use one of \['nanochat-2025', 'nanochat-2026'\]")):
        (tmp_path / "r.json").write_text(json.dumps(values))
        with pytest.raises(ValueError, match=message):
            Recipe.load(tmp_path / "r.json")


def test_every_setting_with_choices_refuses_another_value_by_name(tmp_path):
    """The settings typed as choices (Literal) are checked in one place, when the arguments are built."""
    import typing

    settings = [f for group in CONCERNS.values() for f in dataclasses.fields(group)]
    chosen = sorted(f.name for f in settings if typing.get_origin(f.type) is typing.Literal)
    assert chosen == ["adamw_groups", "muon_ns_dtype", "muon_orthogonalizer", "parameter_count", "warmdown_shape",
                      "weight_decay_shape"]
    base = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    for name in chosen:
        with pytest.raises(ValueError, match=rf"^{name}='nope': use one of \['"):
            HansardTrainingArguments.from_settings(**base, **{name: "nope"})
    with pytest.raises(ValueError, match="muon_compile='auto': use true, false or null"):
        HansardTrainingArguments.from_settings(**base, muon_compile="auto")
    with pytest.raises(ValueError, match="muon_plus='yes': use true or false"):
        Recipe.load("tiny", ["--muon_plus=yes"]).training_arguments()
    for name in [f.name for f in settings if f.metadata["at_most"] is not None]:  # ranges: NaN, Infinity, below 0
        for bad in (math.nan, math.inf, -1):
            with pytest.raises(ValueError, match=rf"^{name}={bad!r}: must be a finite number"):
                HansardTrainingArguments.from_settings(**base, **{name: bad})


def test_the_trainers_twin_of_a_setting_is_refused_unless_it_agrees(tmp_path):
    """One name per setting: the Trainer's per_device_*_batch_size, eval_steps and save_steps follow device_batch_size,
    eval_every and save_every; setting a twin to something else is an error naming the setting to use."""
    base = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    args = HansardTrainingArguments.from_settings(**base, device_batch_size=4, eval_every=10, save_every=20)
    assert (args.per_device_train_batch_size, args.per_device_eval_batch_size, args.eval_steps, args.save_steps) == \
        (4, 4, 10, 20)
    assert dataclasses.replace(args).per_device_train_batch_size == 4  # agreeing twins are fine
    for twin, ours in (("per_device_train_batch_size", "device_batch_size"), ("per_device_eval_batch_size",
                       "device_batch_size"), ("eval_steps", "eval_every"), ("save_steps", "save_every")):
        with pytest.raises(ValueError, match=rf"^{twin}=3: hansard-hf sets it from {ours} .*; set {ours}=3 instead"):
            HansardTrainingArguments(**base, **{twin: 3})

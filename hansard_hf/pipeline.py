"""The whole run of a recipe: tokenizer -> data -> model -> train -> evaluate -> save (and push)."""

import json
import logging
import shutil
from pathlib import Path

from accelerate import PartialState
from transformers import set_seed

from .core import load_bundle
from .data import TokenRows, prepare
from .hansard_bench import build_hansard_tasks
from .modeling_hansard_gpt import HansardGPTForCausalLM
from .recipe import Recipe
from .tokenization import TOKEN_BYTES_FILE, load_token_bytes, load_tokenizer, save_tokenizer, train_tokenizer
from .trainer import HansardTrainer

logger = logging.getLogger(__name__)


def ensure_tokenizer(recipe: Recipe) -> Path:
    """The recipe's tokenizer folder, training the Hansard tokenizer on the corpus' train split if it is missing."""
    folder = recipe.tokenizer_dir()
    if (folder / "tokenizer.json").exists():
        return folder
    if recipe.values.get("tokenizer", "hansard") != "hansard" and "tokenizer_dir" not in recipe.values:
        raise FileNotFoundError(f"tokenizer {folder}: no tokenizer.json there; use \"hansard\" to train one.")
    logger.info("Training the Hansard tokenizer into %s.", folder)
    tokenizer = train_tokenizer(recipe.corpus().texts("train"), recipe.values.get("tokenizer_vocab_size", 65536),
                                max_chars=recipe.values.get("tokenizer_max_chars", 2_000_000_000))
    save_tokenizer(tokenizer, folder, overwrite=True)
    return folder


def benchmark_tasks(recipe: Recipe, args) -> list:
    """The tasks run every core_metric_every steps: CORE (if a bundle is configured) and the Hansard benchmark
    built from the corpus' test split, each capped at core_max_per_task examples."""
    if args.core_metric_every <= 0:
        return []
    tasks = load_bundle(args.core_bundle, args.core_max_per_task) if args.core_bundle else []
    return tasks + [t for t in build_hansard_tasks(recipe.corpus().texts("test"), args.core_max_per_task) if t.examples]


def run_recipe(path, overrides=None) -> HansardTrainer:
    """Train a recipe end to end; a run whose output folder holds a complete checkpoint resumes from it."""
    recipe = Recipe.load(path, overrides)
    with PartialState().main_process_first():  # the main process trains the tokenizer and prepares data first
        tokenizer_dir = ensure_tokenizer(recipe)
        data_dir = recipe.data_dir()
        prepare(recipe.corpus(), tokenizer_dir, data_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    args = recipe.training_arguments()
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    set_seed(args.seed)  # the initialisation is part of the run: same recipe, same weights
    model = HansardGPTForCausalLM(recipe.model_config(vocab_size=len(tokenizer), **ids))
    train = TokenRows(data_dir, "train", args.max_seq_len, tokenizer_dir=tokenizer_dir)
    validation = TokenRows(data_dir, "validation", args.max_seq_len) if args.eval_every > 0 else None
    trainer = HansardTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                             token_bytes=load_token_bytes(tokenizer_dir), processing_class=tokenizer,
                             recipe=recipe.to_dict(), benchmark_tasks=benchmark_tasks(recipe, args))
    trainer.train(resume_from_checkpoint=True)
    if validation is not None and trainer.state.global_step % args.eval_every:  # always end on an evaluation
        trainer.evaluate()
    trainer.save_model()
    if trainer.is_world_process_zero():
        out = Path(args.output_dir)
        (out / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")
        shutil.copy(tokenizer_dir / TOKEN_BYTES_FILE, out / TOKEN_BYTES_FILE)
        trainer.create_model_card()
    if args.push_to_hub:
        trainer.push_to_hub()
    return trainer

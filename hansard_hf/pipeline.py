"""The whole run of a recipe: tokenizer -> data -> model -> train -> evaluate -> save (and push)."""

import json
import shutil
from pathlib import Path

from accelerate import PartialState
from transformers import set_seed

from .checkpoints import OutputDirLock
from .data import TokenRows, prepare, selection_text
from .distributed import on_main_process
from .evaluation import build_hansard_tasks, load_bundle
from .memory import fit_to_memory
from .modeling_hansard_gpt import HansardGPTForCausalLM
from .layout import describe_layout
from .preflight import preflight
from .progress import RUN_COMPLETE, finished_steps
from .recipe import Recipe
from .tokenization import TOKEN_BYTES_FILE, ensure_tokenizer, load_token_bytes, load_tokenizer
from .trainer import HansardTrainer

def recipe_tokenizer(recipe: Recipe) -> Path:
    """The recipe's tokenizer folder, training the Hansard tokenizer on the corpus' train split if it is missing."""
    folder = recipe.tokenizer_dir
    if not recipe.trains_tokenizer and not (folder / "tokenizer.json").exists():
        raise FileNotFoundError(f"tokenizer {folder}: no tokenizer.json there; use \"hansard\" to train one.")
    return ensure_tokenizer(recipe.corpus, folder, **recipe.tokenizer_settings)


def benchmark_tasks(recipe: Recipe, args) -> list:
    """The tasks run every core_metric_every steps: CORE (if a bundle is configured) and the Hansard benchmark
    built from the corpus' test split, each capped at core_max_per_task examples."""
    if args.evaluation.core_metric_every <= 0:
        return []
    tasks = load_bundle(args.evaluation.core_bundle, args.evaluation.core_max_per_task) if args.evaluation.core_bundle else []
    return tasks + [t for t in build_hansard_tasks(recipe.corpus.texts("test"), args.evaluation.core_max_per_task) if t.examples]


def run_recipe(path, overrides=None) -> HansardTrainer | None:
    """Train a recipe end to end; a run whose output folder holds a complete checkpoint resumes from it, and a run
    that already finished (RUN_COMPLETE) says so and returns None; a higher max_steps extends it."""
    recipe = Recipe.load(path, overrides)
    state = PartialState(cpu=bool(recipe.settings["use_cpu"]))  # the processes as the run will use them
    say = print if state.is_main_process else (lambda *_: None)
    for notice in preflight(recipe):
        say(notice)
    args = recipe.training_arguments()  # the training values are checked before the tokenizer and data, not after
    say(f"run        {recipe.path} -> {recipe.output_dir}")
    say(f"corpus     {recipe.corpus.source}: {recipe.corpus.describe()}")
    with state.main_process_first():  # the main process trains the tokenizer and prepares data first
        found = (recipe.tokenizer_dir / "tokenizer.json").exists()
        say(f"tokenizer  {recipe.tokenizer_dir}{'' if found else ' (training it now)'}")
        tokenizer_dir = recipe_tokenizer(recipe)
        data_dir = recipe.data_dir
        say(f"data       {data_dir}")
        if removed := selection_text(prepare(recipe.corpus, tokenizer_dir, data_dir)):
            say(removed)
    tokenizer = load_tokenizer(tokenizer_dir)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    config = recipe.model_config(vocab_size=len(tokenizer), **ids)
    args.resolve(config)
    say(describe_layout(args))
    out = Path(args.output_dir)
    done = finished_steps(out)
    if done is not None and done >= args.max_steps:
        asked = "" if done == args.max_steps else f"; max_steps={args.max_steps} asks for no more than it has"
        say(f"{out} already finished at step {done:,}{asked} (model, tokenizer and card are there). To train further, "
            f"run again with a max_steps above {done:,} (e.g. --max_steps={2 * done}): it resumes from the last "
            "checkpoint.")
        return None
    lock = OutputDirLock(out)
    on_main_process(lock.acquire)  # one live run per folder, the Trainer's too; a refusal stops every process
    try:
        trainer = _train(recipe, args, config, tokenizer, tokenizer_dir, data_dir, state, lock)
    finally:
        lock.release()
    state.wait_for_everyone()  # every process is done before the process group closes: none aborts at exit
    state.destroy_process_group()
    return trainer


def _train(recipe, args, config, tokenizer, tokenizer_dir, data_dir, state, lock) -> HansardTrainer:
    """The part of run_recipe that writes into the output folder."""
    out = Path(args.output_dir)
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)  # the run's recipe, with the folders it resolved: `hansard-hf train OUT`
        resolved = {"tokenizer_dir": str(tokenizer_dir.resolve()), "data_dir": str(data_dir.resolve()),
                    "output_dir": str(out.resolve())}  # absolute: the run's folders are the same from any directory
        (out / "recipe.json").write_text(json.dumps({**recipe.to_dict(), **resolved}, indent=2) + "\n")
    set_seed(args.seed)  # the initialisation is part of the run: same recipe, same weights
    model = HansardGPTForCausalLM(config)
    train = TokenRows(data_dir, "train", args.budget.max_seq_len, tokenizer_dir=tokenizer_dir)
    validation = TokenRows(data_dir, "validation", args.budget.max_seq_len) if args.evaluation.eval_every > 0 else None
    fit_to_memory(model, args, train)
    trainer = HansardTrainer(model=model, args=args, train_dataset=train, eval_dataset=validation,
                             token_bytes=load_token_bytes(tokenizer_dir), processing_class=tokenizer,
                             recipe=recipe.to_dict(), output_lock=lock,
                             benchmark_tasks=on_main_process(lambda: benchmark_tasks(recipe, args)))
    trainer.train(resume_from_checkpoint=True)
    if validation is not None and trainer.state.global_step % args.evaluation.eval_every:  # always end on an evaluation
        trainer.evaluate()
    trainer.save_model()
    if trainer.is_world_process_zero():
        shutil.copy(tokenizer_dir / TOKEN_BYTES_FILE, out / TOKEN_BYTES_FILE)
        trainer.create_model_card()
    if args.push_to_hub:
        trainer.push_to_hub()
    if trainer.is_world_process_zero():
        (out / RUN_COMPLETE).write_text(json.dumps({"steps": trainer.state.global_step}) + "\n")
    return trainer

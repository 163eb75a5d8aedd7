"""The `hansard-hf` command line."""

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from . import locations
from .settings import EVAL_TOKENS
from .locations import DEFAULT_DATASET, TOKENIZER_SETTINGS

SELECTION_OPTIONS = ("bodies", "since", "before", "languages", "validation_from", "test_from", "dedup")


def _export(args):
    from .hub import export_to_nanochat

    out = export_to_nanochat(args.checkpoint, args.out_dir, overwrite=args.overwrite)
    print(f"wrote native NanoChat checkpoint to {out} (load with AutoModelForCausalLM, no trust_remote_code)")


def _import_nanochat(args):
    from .hub import import_from_nanochat
    from .nanochat_checkpoint import is_nanochat_checkpoint, import_nanochat

    source = Path(args.checkpoint)
    if is_nanochat_checkpoint(source):  # nanochat's own model_<step>.pt + meta_<step>.json
        out = import_nanochat(source, args.out_dir, step=args.step, overwrite=args.overwrite)
    elif source.is_dir() and not (source / "config.json").exists():
        raise FileNotFoundError(f"{source} holds neither nanochat's model_<step>.pt and meta_<step>.json nor a "
                                "transformers NanoChat model (config.json): name one of those folders.")
    else:  # a transformers NanoChatForCausalLM folder or Hub id
        out = import_from_nanochat(args.checkpoint, args.out_dir, overwrite=args.overwrite)
    print(f"wrote HansardGPT checkpoint to {out}")


def _corpus(args, check: bool = False):
    """The corpus the options name; with `check`, checked as a run about to read it checks it (local files there
    and, for ParlParse XML, every selected day file parsed; the Hub answers)."""
    from .data import Corpus

    corpus = Corpus(args.dataset, args.text_field, args.id_field, args.split_field,
                    **{field: getattr(args, field) for field in SELECTION_OPTIONS})
    if check:
        from .preflight import check_corpus

        check_corpus(corpus, parse=True)
    return corpus


def _recipe_corpus_options(args) -> dict:
    """The corpus options given beside a recipe or run, as its recipe keys (as `train` takes them)."""
    options = {"dataset": args.dataset, "text_field": args.text_field, "id_field": args.id_field,
               "split_field": args.split_field} if args.dataset else {}
    return {**options, **{field: getattr(args, field) for field in SELECTION_OPTIONS if getattr(args, field)}}


def _add_corpus_arguments(parser, default=DEFAULT_DATASET):
    parser.add_argument("--dataset", default=default, help="Hub dataset id, or local JSONL/JSON/Parquet/text file, "
                        "glob or folder, or ParlParse scrapedxml day files (*.xml, *.xml.gz)"
                        + (f" (default {default})" if default else ""))
    parser.add_argument("--text-field", default="text", help="field holding the document text")
    parser.add_argument("--id-field", default="id", help="field whose hash picks the split (default id)")
    parser.add_argument("--split-field", default=None, help="field holding train/validation/test, instead of the hash")
    parser.add_argument("--bodies", default=(), help="keep only these bodies, comma-separated: commons, lords, "
                        "westminster-hall, committees, commons-written-answers, ... or the groups westminster, "
                        "written, devolved (default: all)")
    parser.add_argument("--since", default=None, help="keep documents dated on or after this (YYYY, YYYY-MM or "
                        "YYYY-MM-DD)")
    parser.add_argument("--before", default=None, help="keep documents dated before this")
    parser.add_argument("--languages", default=(), help="keep only these languages, comma-separated (en, cy)")
    parser.add_argument("--validation-from", default=None, help="temporal split: train before this date, validation "
                        "from it (with --test-from)")
    parser.add_argument("--test-from", default=None, help="temporal split: test from this date on")
    parser.add_argument("--dedup", action="store_true", help="remove paragraphs the corpus already had (exact and near "
                        "copies of 5+ words), so none is in two splits")


def _train_tokenizer(args):
    from .tokenization import save_tokenizer, train_tokenizer

    corpus = _corpus(args, check=True)
    out = args.out or locations.tokenizer_dir(corpus, vocab_size=args.vocab_size, doc_cap=args.doc_cap,
                                              max_chars=args.max_chars, nfkc=args.nfkc)
    tokenizer = train_tokenizer(corpus.texts("train"), args.vocab_size, args.doc_cap, args.max_chars, args.nfkc)
    out = save_tokenizer(tokenizer, out, overwrite=args.overwrite)
    print(f"wrote a {len(tokenizer):,}-token tokenizer (bos id {tokenizer.bos_token_id}) to {out}")


def _prepared(args, replace=False) -> tuple:
    """(data folder, its index) of the corpus tokenized by --tokenizer (default: the Hansard tokenizer of this
    corpus, trained first if missing) in --out (default: the folder locations.data_dir names)."""
    from .data import prepare

    corpus = _corpus(args, check=True)  # every XML day file parses, before the tokenizer is trained or data prepared
    tokenizer = args.tokenizer or locations.tokenizer_dir(corpus)
    if args.tokenizer is None and not (tokenizer / "tokenizer.json").exists():
        from .tokenization import ensure_tokenizer

        print(f"training the Hansard tokenizer of {corpus.source} into {tokenizer}", file=sys.stderr)
        ensure_tokenizer(corpus, tokenizer)
    out = getattr(args, "out", None) or locations.data_dir(corpus, tokenizer)
    return out, prepare(corpus, tokenizer, out, rebuild=getattr(args, "rebuild", False), replace=replace)


def _prepare(args):
    from .data import selection_text

    out, index = _prepared(args, replace=args.replace)
    for split, info in index["splits"].items():
        print(f"{split}: {info['tokens']:,} tokens, {info['documents']:,} documents in {len(info['shards'])} shard(s)")
    if selection_text(index):
        print(selection_text(index))
    print(f"prepared data in {out}")


def _count_tokens(args):
    from .counting import report

    if args.json:
        with contextlib.redirect_stdout(sys.stderr):  # stdout holds the JSON alone, whatever a library prints
            from .counting import seed_choice, split_counts

            data = _counted_data(args)
            counts = split_counts(data)
        print(json.dumps({"data_dir": str(data), "splits": counts, "seed_depth": seed_choice(counts["train"]["tokens"])}))
        return
    data = _counted_data(args)
    print(f"data       {data}")
    print(report(data, args.split))


def _counted_data(args):
    """The prepared data folder count-tokens reports on: --data, a run's or recipe's, or --dataset's (prepared)."""
    if args.data:
        return args.data
    if args.run_or_recipe:
        from .recipe import Recipe

        recipe = Recipe.load(args.run_or_recipe, _recipe_corpus_options(args))
        if not (recipe.tokenizer_dir / "tokenizer.json").exists():
            raise FileNotFoundError(f"{recipe.path}: its tokenizer ({recipe.tokenizer_dir}) is not trained yet, so "
                                    f"neither is its data: `hansard-hf train {args.run_or_recipe}` (with the same "
                                    "corpus options) builds both first.")
        return recipe.data_dir
    if args.dataset:
        return _prepared(args)[0]
    raise ValueError("count what? Name a run folder or recipe (hansard-hf count-tokens runs/hansard_tiny), "
                     "prepared data (--data=FOLDER) or a corpus (--dataset=PATH_OR_HUB_ID).")


def _corpus_report(args):
    from .corpus_report import summary_text

    if args.json:
        with contextlib.redirect_stdout(sys.stderr):  # stdout holds the JSON alone, whatever a library prints
            summary, png = _corpus_summary(args)
        print(json.dumps({**summary, "png": str(png) if png else None}))
        return
    summary, png = _corpus_summary(args)
    print(summary_text(summary))
    print(f"\nwrote {png} (tokens per year by body)" if png else "\nno document has a date: no plot of tokens per year")


def _qa(args):
    from .qa import build_qa, counts_text

    if not args.dataset:
        raise ValueError("name the corpus: --dataset=scrapedxml/ (ParlParse day files) or a table of turns with a "
                         "kind field (--dataset=hansard_speeches.jsonl).")
    if args.dedup:
        raise ValueError("--dedup removes repeated paragraphs from documents; qa drops repeated pairs itself: leave "
                         "it out.")
    corpus = _corpus(args, check=True)
    counts = build_qa(corpus, args.out, args.max_chars, overwrite=args.overwrite)
    print(counts_text(counts))
    print(f"wrote {args.out} (datasets.load_from_disk; a messages column for TRL's SFTTrainer)")


def _sft(args):
    from .finetuning import run_sft

    out = args.out or f"{str(args.base).rstrip('/')}-sft"
    bpb = run_sft(args.base, args.data, out, args.recipe, args.overrides)
    if os.environ.get("RANK", "0") != "0":
        return  # the main process speaks
    print(f"held-out answers, bits per byte: base {bpb['base']:.4f} -> fine-tuned {bpb['finetuned']:.4f}")
    print(f"wrote {out} (model, tokenizer with its chat template, model card)")


def _serve(args):
    from .serving import serve

    serve(args.model, args.host, args.port, args.device, args.trust_remote_code)


def _corpus_summary(args) -> tuple[dict, Path | None]:
    """The summary of the corpus the arguments name (its tokenizer trained first if missing) and its plot's path."""
    from .corpus_report import PLOT_FILE, plot_tokens_per_year, summarize
    from .tokenization import ensure_tokenizer

    if args.run_or_recipe:
        from .preflight import check_corpus
        from .recipe import Recipe

        recipe = Recipe.load(args.run_or_recipe, _recipe_corpus_options(args))
        corpus, tokenizer, settings = recipe.corpus, recipe.tokenizer_dir, dict(recipe.tokenizer_settings)
        check_corpus(corpus, parse=True)
        trains = recipe.trains_tokenizer
    elif args.dataset:
        corpus = _corpus(args, check=True)
        tokenizer, settings, trains = args.tokenizer or locations.tokenizer_dir(corpus), {}, args.tokenizer is None
    else:
        raise ValueError("which corpus? Name a run folder or recipe (hansard-hf corpus d24 --bodies=commons) or a "
                         "corpus (--dataset=PATH_OR_HUB_ID, with --bodies, --since, ... to select).")
    if trains and not (Path(tokenizer) / "tokenizer.json").exists():
        print(f"training the Hansard tokenizer of {corpus.source} into {tokenizer}", file=sys.stderr)
        ensure_tokenizer(corpus, tokenizer, **settings)
    summary = summarize(corpus, tokenizer)
    run_folder = args.run_or_recipe and Path(args.run_or_recipe).is_dir()
    return summary, plot_tokens_per_year(summary, args.png or (Path(args.run_or_recipe) if run_folder else
                                                               locations.corpus_report_dir(corpus)) / PLOT_FILE)


def _train(args):
    from .pipeline import run_recipe
    from .stopping import TrainingStopped

    try:
        trainer = run_recipe(args.recipe, args.overrides)
    except TrainingStopped as stop:  # a signal: its checkpoint is complete, and the run resumes from it
        if os.environ.get("RANK", "0") == "0":
            print(f"hansard-hf train: {stop}", file=sys.stderr, flush=True)
        raise SystemExit(stop.exit_status) from None
    if trainer is not None:  # None: the run had finished already (run_recipe said so)
        print(f"trained {trainer.state.global_step} steps; model, tokenizer and card in {trainer.args.output_dir}")


def _plan(args):
    from .plan import describe_plan, plan, plan_table
    from .recipe import Recipe

    recipes = [Recipe.load(name, args.overrides) for name in args.recipes]
    if args.markdown:
        print(plan_table(recipes, args.gpus, args.gpu, args.mfu, args.gpu_memory))
        return
    for recipe in recipes:
        print(f"== {recipe.path}")
        print(describe_plan(plan(recipe, args.gpus, args.gpu, args.mfu, args.gpu_memory)))


def _push(args):
    from .hub import push

    url = push(args.checkpoint, args.repo_id, private=args.private)
    print(f"pushed {args.checkpoint} to {args.repo_id}: {url}")


def _plot(args):
    from .card import plot

    print(f"wrote {plot(args.run_dir, args.out)}")


def _status(args):
    from .progress import status_text

    print(status_text(args.run_dir))


def _eval(args):
    from .evaluation.evaluate_checkpoint import evaluate_checkpoint, format_results

    tasks = args.tasks.split(",") if args.tasks else None
    results = evaluate_checkpoint(args.checkpoint, tasks, _corpus(args), args.split,
                                  args.core_bundle, args.max_per_task, args.eval_tokens, args.json, args.trust_remote_code)
    if results is not None:
        print(format_results(results))


class _Parser(argparse.ArgumentParser):
    """An argument parser that takes every `--two-words` option also as `--two_words`, as recipe overrides are
    written (`hansard-hf train tiny --split_field=split`)."""

    def add_argument(self, *names, **kwargs):
        action = super().add_argument(*names, **kwargs)
        aliases = ["--" + name[2:].replace("-", "_") for name in names if name.startswith("--") and "-" in name[2:]]
        if aliases:  # the same setting, not listed twice in --help
            super().add_argument(*aliases, **{**kwargs, "dest": action.dest, "default": argparse.SUPPRESS,
                                              "help": argparse.SUPPRESS})
        return action


def _options_text() -> str:
    from .arguments import options_text

    return options_text()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hansard-hf", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    _model_commands(commands)
    _data_commands(commands)
    _run_commands(commands)
    _finetuning_commands(commands)
    return parser


def _model_commands(commands) -> None:
    """export, import-nanochat: between HansardGPT and nanochat's formats."""
    export = commands.add_parser("export", help="HansardGPT checkpoint -> transformers' native NanoChat folder")
    export.add_argument("checkpoint", help="folder or Hub id of a HansardGPT checkpoint")
    export.add_argument("out_dir", help="folder to write the NanoChat checkpoint to")
    export.add_argument("--overwrite", action="store_true", help="replace out_dir if it exists")
    export.set_defaults(func=_export)

    imp = commands.add_parser("import-nanochat", help="nanochat checkpoint (its own or transformers') -> HansardGPT folder")
    imp.add_argument("checkpoint", help="nanochat's checkpoint folder (model_<step>.pt + meta_<step>.json, Oct 2025 or "
                                        "2026), or a folder or Hub id of a transformers NanoChatForCausalLM")
    imp.add_argument("--step", type=int, help="which step of nanochat's folder (default: the last)")
    imp.add_argument("out_dir", help="folder to write the HansardGPT checkpoint to")
    imp.add_argument("--overwrite", action="store_true", help="replace out_dir if it exists")
    imp.set_defaults(func=_import_nanochat)


def _data_commands(commands) -> None:
    """tokenizer, prepare, count-tokens, corpus: the corpus, its tokenizer and its tokens."""
    tokenizer = commands.add_parser("tokenizer", help="the Hansard BPE tokenizer")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    train = tokenizer_commands.add_parser("train", help="train the BPE tokenizer on the corpus' train split")
    _add_corpus_arguments(train)
    train.add_argument("--vocab-size", type=int, default=TOKENIZER_SETTINGS["vocab_size"],
                       help="tokens, the 9 special tokens included")
    train.add_argument("--doc-cap", type=int, default=TOKENIZER_SETTINGS["doc_cap"], help="characters read per document")
    train.add_argument("--max-chars", type=int, default=TOKENIZER_SETTINGS["max_chars"], help="characters read in total")
    train.add_argument("--nfkc", action="store_true", help="NFKC-normalise text before tokenizing")
    train.add_argument("--out", default=None, help=f"folder to write (default: {locations.home()}/tokenizers/"
                       "hansard-<vocab>-<fingerprint of corpus and settings>, where recipes and prepare look)")
    train.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    train.set_defaults(func=_train_tokenizer)

    default_tokenizer = "the Hansard tokenizer of this corpus, trained first if missing"
    default_data = f"{locations.home()}/data/<fingerprint of corpus and tokenizer>, where recipes look"
    prep = commands.add_parser("prepare", help="tokenize the corpus into token shards, one per split")
    _add_corpus_arguments(prep)
    prep.add_argument("--tokenizer", default=None, help=f"tokenizer folder (default: {default_tokenizer})")
    prep.add_argument("--out", default=None, help=f"folder to write (default: {default_data})")
    prep.add_argument("--rebuild", action="store_true", help="rebuild even if the folder is up to date")
    prep.add_argument("--replace", action="store_true",
                      help="--out holds something else (another corpus or tokenizer, other files): delete it and prepare")
    prep.set_defaults(func=_prepare)

    count = commands.add_parser("count-tokens", help="tokens per split, and which recipe the corpus supports")
    count.add_argument("run_or_recipe", nargs="?", default=None,
                       help="a run folder (runs/hansard_tiny) or recipe (tiny, d24, a JSON file; with --dataset etc. as its "
                       "corpus): count its data")
    count.add_argument("--data", default=None, help="a prepared data folder to count")
    _add_corpus_arguments(count, default=None)
    count.add_argument("--tokenizer", default=None, help=f"with --dataset: tokenizer folder (default: {default_tokenizer})")
    count.add_argument("--split", default=None, choices=["train", "validation", "test"], help="only this split")
    count.add_argument("--json", action="store_true", help="print the counts and the seed's depth as one JSON object")
    count.set_defaults(func=_count_tokens)

    corpus_run = commands.add_parser("corpus", help="documents, words and tokens of a corpus by body, decade and split, "
                                     "its duplicates, and a PNG of tokens per year by body")
    corpus_run.add_argument("run_or_recipe", nargs="?", default=None,
                            help="a run folder or recipe (its corpus and tokenizer; --dataset etc. change its corpus)")
    _add_corpus_arguments(corpus_run, default=None)
    corpus_run.add_argument("--tokenizer", default=None, help=f"with --dataset: tokenizer folder (default: {default_tokenizer})")
    corpus_run.add_argument("--png", default=None, help="where to write the plot (default: RUN_DIR/corpus_tokens_per_year.png for a run "
                            f"folder, else {locations.home()}/corpus/<fingerprint of the corpus>/corpus_tokens_per_year.png)")
    corpus_run.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    corpus_run.set_defaults(func=_corpus_report)


def _finetuning_commands(commands) -> None:
    """qa, sft, serve: after pretraining."""
    from .qa import MAX_CHARS

    qa = commands.add_parser("qa", help="written and oral questions and their answers -> a chat dataset (messages) "
                             "for fine-tuning, split by date or section, with counts of pairs, unmatched and dropped")
    _add_corpus_arguments(qa, default=None)
    qa.add_argument("--out", required=True, help="folder to write the dataset into (datasets.load_from_disk)")
    qa.add_argument("--max-chars", type=int, default=MAX_CHARS, help=f"drop pairs longer than this, question and "
                    f"answer together (default {MAX_CHARS:,})")
    qa.add_argument("--overwrite", action="store_true", help="replace --out if it holds something")
    qa.set_defaults(func=_qa)

    sft = commands.add_parser("sft", help="fine-tune a model folder on a chat dataset (hansard-hf qa's) with TRL")
    sft.add_argument("base", help="the model folder to fine-tune (a run folder, or any HansardGPT folder with its "
                     "tokenizer)")
    sft.add_argument("--data", required=True, help="the chat dataset folder (hansard-hf qa --out)")
    sft.add_argument("--recipe", default="sft", help="SFT recipe: shipped sft (nanochat's chat_sft, MuonAdamW) or "
                     "sft-lora (a LoRA adapter, merged back), or a JSON file")
    sft.add_argument("--out", default=None, help="where to write the fine-tuned model (default BASE-sft)")
    sft.set_defaults(func=_sft)

    serve = commands.add_parser("serve", help="talk to a model: a chat page and an OpenAI-compatible API "
                                "(transformers serve underneath)")
    serve.add_argument("model", help="a run, checkpoint or model folder (hansard-hf sft's chats; a base model "
                       "continues text)")
    serve.add_argument("--host", default="localhost", help="address to listen on (default localhost; 0.0.0.0 for "
                       "every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port of the page and the API (default 8000)")
    serve.add_argument("--device", default="auto", help="where the model runs: auto, cpu, cuda:0, ... (default auto)")
    serve.add_argument("--trust-remote-code", action="store_true", help="serve a folder that is not a HansardGPT "
                       "model and brings its own code, running that code (only for a folder you trust)")
    serve.set_defaults(func=_serve)


def _run_commands(commands) -> None:
    """train, plan, push, eval, status, plot: a run and its model."""
    train_run = commands.add_parser("train", help="train a recipe end to end (tokenizer, data, train, eval, save)")
    train_run.add_argument("recipe", help="shipped recipe name (tiny, d16, d24, d36, d48, d80), recipe JSON, or a run folder")
    train_run.add_argument("overrides", nargs=argparse.REMAINDER, help="--key=value overrides of recipe keys")
    train_run.set_defaults(func=_train)
    plain_help = train_run.format_help  # the options' reference, read from their fields when --help asks for it
    train_run.format_help = lambda: plain_help() + "\n" + _options_text()

    plan_run = commands.add_parser("plan", help="params, tokens, steps, batch, FLOPs, memory and time of recipes")
    plan_run.add_argument("recipes", nargs="+", help="shipped recipe names (d24), recipe JSON files or run folders; "
                          "--key=value overrides apply to each (--save_total_limit=2)")
    plan_run.add_argument("--gpus", type=int, default=8, help="number of GPUs (default 8)")
    plan_run.add_argument("--gpu", default="H100", help="GPU model for the peak FLOP/s (H100, A100, H200, ...)")
    plan_run.add_argument("--mfu", type=float, default=0.45, help="assumed model FLOPs utilisation (default 0.45)")
    plan_run.add_argument("--gpu-memory", type=float, default=85,
                          help="GB per GPU as CUDA reports it, for the checkpointing (default 85: an H100 80GB)")
    plan_run.add_argument("--markdown", action="store_true", help="one markdown table (the README's)")
    plan_run.set_defaults(func=_plan)

    push_run = commands.add_parser("push", help="checkpoint -> Hub repo (weights, code, tokenizer, model card)")
    push_run.add_argument("checkpoint", help="a run folder or checkpoint-N folder")
    push_run.add_argument("repo_id", help="owner/name on the Hub")
    push_run.add_argument("--private", action="store_true", help="create the repo as private (an existing repo keeps "
                          "its visibility)")
    push_run.set_defaults(func=_push)

    evaluation = commands.add_parser("eval", help="bits per byte, CORE, the Hansard benchmark and samples of a model")
    evaluation.add_argument("checkpoint", help="folder or Hub id of any causal LM with its tokenizer")
    evaluation.add_argument("--tasks", default=None, help="comma-separated of bpb,core,hansard,sample (default: all but "
                            "core, plus core with --core-bundle)")
    evaluation.add_argument("--core-bundle", default=None, help="CORE bundle folder (core.yaml, eval_data/, eval_meta_data.csv)")
    evaluation.add_argument("--max-per-task", type=int, default=None, help="cap on examples per CORE/Hansard task")
    evaluation.add_argument("--split", default="test", choices=["validation", "test"], help="held-out split (default test)")
    evaluation.add_argument("--eval-tokens", type=int, default=EVAL_TOKENS, help=f"tokens for bpb (default {EVAL_TOKENS:,})")
    evaluation.add_argument("--json", default=None, help="also write the results to this JSON file")
    evaluation.add_argument("--trust-remote-code", action="store_true",
                            help="let a folder or repo with its own model code run it (HansardGPT needs no such trust)")
    _add_corpus_arguments(evaluation)
    evaluation.set_defaults(func=_eval)

    status = commands.add_parser("status", help="where a run stands: live or why it ended, step, checkpoint, bpb, ETA")
    status.add_argument("run_dir", help="the run's output folder")
    status.set_defaults(func=_status)

    plot_run = commands.add_parser("plot", help="draw a run's loss and validation bpb curves (PNG)")
    plot_run.add_argument("run_dir", help="the run's output folder")
    plot_run.add_argument("--out", default=None, help="PNG path (default RUN_DIR/training_curves.png)")
    plot_run.set_defaults(func=_plot)


def _error_stream():
    """stderr; stdout under accelerate's single-process launcher, which (accelerate >= 1.16) repeats a failed
    process's stderr as a RuntimeError: the one line would be printed twice."""
    single = "ACCELERATE_MIXED_PRECISION" in os.environ and "LOCAL_RANK" not in os.environ  # torchrun sets LOCAL_RANK
    return sys.stdout if single else sys.stderr


def main(argv=None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command in ("plan", "sft"):  # `hansard-hf plan d48 --save_total_limit=2`: recipe overrides, as for train
        args.overrides = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        args.func(args)
    except (OSError, ValueError) as error:  # bad input: one line, from the main process only
        if os.environ.get("RANK", "0") == "0":
            print(f"hansard-hf {args.command}: error: {error}", file=_error_stream(), flush=True)
        from .distributed import wait_for_everyone

        wait_for_everyone()  # the others exit after the main process said why (the launcher stops them all)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

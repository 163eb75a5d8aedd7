"""`hansard-hf eval`: bits per byte, CORE, the Hansard benchmark and samples of any causal LM with its tokenizer.

Works in one process or under `accelerate launch -m hansard_hf.cli eval ...`: bpb rows and benchmark examples are
split across ranks and the sums reduced; the main process prints and writes the results.
"""

import json
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer

from .. import locations
from ..auto import register
from ..settings import EVAL_TOKENS
from ..checkpoints import other_tokenizer
from ..data import Corpus, TokenRows, prepare
from ..distributed import on_main_process
from ..files import did_you_mean, is_hub_id
from ..tokenization import load_token_bytes, tokenizer_fingerprint
from .bpb import evaluate_bpb
from .core_benchmark import evaluate_tasks, load_bundle
from .hansard_tasks import build_hansard_tasks
from .samples import sample

TASKS = ("bpb", "core", "hansard", "sample")


def _local_tokenizer(checkpoint, tokenizer) -> Path:
    """A local folder holding the tokenizer (the checkpoint itself, or a copy for a Hub id)."""
    if (Path(checkpoint) / "tokenizer.json").exists():
        return Path(checkpoint)
    folder = locations.eval_tokenizer_dir(checkpoint)
    if not (folder / "tokenizer.json").exists():
        tokenizer.save_pretrained(folder)
    return folder


def _rows(rows: TokenRows, limit: int, batch_size: int, rank: int, world: int):
    """Batches of this rank's share of the first `limit` rows."""
    mine = list(range(rank, min(limit, len(rows)), world))
    for start in range(0, len(mine), batch_size):
        items = [rows[i] for i in mine[start : start + batch_size]]
        yield {key: torch.stack([item[key] for item in items]) for key in items[0]}


def load_checked(checkpoint, trust_remote_code: bool = False):
    """(model, tokenizer) of a folder or Hub id, with one clear error for a folder that wants to run its own code
    (without `trust_remote_code`), a damaged folder, or a tokenizer that does not belong to the model."""
    register()  # HansardGPT folders load with this package's code, no trust_remote_code needed
    path = Path(checkpoint)
    if path.is_dir() and not (path / "config.json").exists():
        raise FileNotFoundError(f"{checkpoint}: no config.json there, so no model: name a run folder, a checkpoint-N "
                                "folder or a Hub repo id.")
    if not path.exists() and "/" in str(checkpoint) and not is_hub_id(checkpoint):  # bare names may be Hub ids (gpt2)
        raise FileNotFoundError(f"{checkpoint}: no such folder{did_you_mean(path)}, nor a Hub repo id (owner/name).")
    try:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=trust_remote_code)
    except Exception as error:  # noqa: BLE001 - re-raised with what to do
        if "trust_remote_code" in str(error):
            raise ValueError(f"{checkpoint} holds code of its own (its config's auto_map names a model type this "
                             "package does not know): it runs only with --trust-remote-code, if you trust its "
                             "source.") from None
        if not path.is_dir():  # a Hub id: not there, or no Hub (transformers' text runs over several lines)
            raise OSError(f"{checkpoint}: no such folder{did_you_mean(path)}, and the Hub did not give it "
                          f"({type(error).__name__}: {str(error).splitlines()[0]})") from None
        raise ValueError(f"{checkpoint}: the model cannot be loaded ({type(error).__name__}: {error}); a file in it is "
                         "incomplete or damaged: evaluate one of its complete checkpoint-N folders, or train again."
                         ) from None
    vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise ValueError(f"{checkpoint}: the tokenizer has {len(tokenizer):,} tokens and the model {vocab:,}: ids past "
                         "the model's vocabulary; use the tokenizer the model was trained with.")
    found = tokenizer_fingerprint(tokenizer)
    if saved := other_tokenizer(checkpoint, found):
        raise ValueError(f"{checkpoint} was trained with tokenizer {saved} and holds tokenizer {found}: other token ids; "
                         "put back the tokenizer files the checkpoint was saved with.")
    return model, tokenizer


def evaluate_checkpoint(checkpoint, tasks=None, corpus: Corpus | None = None, split: str = "test", core_bundle=None,
                        max_per_task: int | None = None, eval_tokens: int = EVAL_TOKENS, json_out=None,
                        trust_remote_code: bool = False) -> dict | None:
    """Evaluate `checkpoint` on `tasks` (default bpb, hansard, sample, and core when a bundle is given). Code from
    the folder or repo runs only with `trust_remote_code` (ours loads without it)."""
    tasks = list(tasks or ["bpb", "hansard", "sample"] + (["core"] if core_bundle else []))
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}: choose from {list(TASKS)}.")
    corpus = corpus or Corpus()
    state = PartialState()
    with state.main_process_first():  # a Hub id is downloaded once, by the main process; the others read its cache
        model, tokenizer = load_checked(checkpoint, trust_remote_code)
    model = model.to(state.device).eval()
    if tokenizer.bos_token_id is None:
        raise ValueError(f"{checkpoint}: the tokenizer has no BOS token; every prompt starts with one.")
    results = {"checkpoint": str(checkpoint)}
    if "bpb" in tasks:
        tokenizer_dir = _local_tokenizer(checkpoint, tokenizer)
        data_dir = locations.data_dir(corpus, tokenizer_dir)
        with state.main_process_first():
            prepare(corpus, tokenizer_dir, data_dir)
        seq = min(getattr(model.config, "max_position_embeddings", None) or 2048, 2048)
        rows = TokenRows(data_dir, split, seq)
        batches = _rows(rows, max(1, eval_tokens // seq), 8, state.process_index, state.num_processes)
        results["bpb"] = {**evaluate_bpb(model, batches, load_token_bytes(tokenizer_dir)), "split": split}
    if "core" in tasks:
        results["core"] = evaluate_tasks(model, tokenizer, load_bundle(core_bundle, max_per_task))
    if "hansard" in tasks:
        hansard = on_main_process(lambda: build_hansard_tasks(corpus.texts(split), max_per_task or 500))
        results["hansard"] = {**evaluate_tasks(model, tokenizer, [t for t in hansard if t.examples]), "split": split}
    if "sample" in tasks and state.is_main_process:
        results["samples"] = sample(model, tokenizer)
    if not state.is_main_process:
        return None
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2))
    return results


def format_results(results: dict) -> str:
    lines = [f"== {results['checkpoint']}"]
    if "bpb" in results:
        bpb = results["bpb"]
        lines.append(f"bits per byte {bpb['bpb']:.4f}   loss {bpb['loss']:.4f} nats/token   ({bpb['split']} split, "
                     f"{bpb['tokens']:,} tokens)")
    for name in ("core", "hansard"):
        if name in results:
            examples = sum(r["examples"] for r in results[name]["tasks"].values())
            source = f"{results[name]['split']} split, " if "split" in results[name] else ""
            lines.append(f"{name}: mean centred accuracy {results[name]['mean_centered']:.4f}   ({source}{examples:,} "
                         "examples)")
            for label, r in results[name]["tasks"].items():
                lines.append(f"  {label:<36} accuracy {r['accuracy']:.4f}  baseline {r['random_baseline']:.3f}  "
                             f"centred {r['centered']:+.4f}  ({r['examples']} examples"
                             f"{', %d cropped to the model' % r['cropped'] if r.get('cropped') else ''})")
    for prompt, text in results.get("samples", {}).items():
        lines.append(f"sample {prompt!r} -> {text!r}")
    return "\n".join(lines)

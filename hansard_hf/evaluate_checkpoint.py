"""`hansard-hf eval`: bits per byte, CORE, the Hansard benchmark and samples of any causal LM with its tokenizer.

Works in one process or under `accelerate launch -m hansard_hf.cli eval ...`: bpb rows and benchmark examples are
split across ranks and the sums reduced; the main process prints and writes the results.
"""

import json
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer

from .core import evaluate_tasks, load_bundle
from . import locations
from .auto import register
from .data import Corpus, TokenRows, prepare
from .distributed import on_main_process
from .evaluation import evaluate_bpb, sample
from .hansard_bench import build_hansard_tasks
from .tokenization import load_token_bytes

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


def evaluate_checkpoint(checkpoint, tasks=None, corpus: Corpus | None = None, split: str = "test", core_bundle=None,
                        max_per_task: int | None = None, eval_tokens: int = 20 * 524288, json_out=None) -> dict | None:
    """Evaluate `checkpoint` on `tasks` (default bpb, hansard, sample, and core when a bundle is given)."""
    tasks = list(tasks or ["bpb", "hansard", "sample"] + (["core"] if core_bundle else []))
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}: choose from {list(TASKS)}.")
    corpus = corpus or Corpus()
    state = PartialState()
    register()  # HansardGPT folders load with this package's code
    with state.main_process_first():  # a Hub id is downloaded once, by the main process; the others read its cache
        model = AutoModelForCausalLM.from_pretrained(checkpoint, trust_remote_code=True).to(state.device).eval()
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
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
        results["bpb"] = evaluate_bpb(model, batches, load_token_bytes(tokenizer_dir))
    if "core" in tasks:
        results["core"] = evaluate_tasks(model, tokenizer, load_bundle(core_bundle, max_per_task))
    if "hansard" in tasks:
        hansard = on_main_process(lambda: build_hansard_tasks(corpus.texts(split), max_per_task or 500))
        results["hansard"] = evaluate_tasks(model, tokenizer, [t for t in hansard if t.examples])
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
        lines.append(f"bits per byte {results['bpb']['bpb']:.4f}   loss {results['bpb']['loss']:.4f} nats/token")
    for name in ("core", "hansard"):
        if name in results:
            lines.append(f"{name}: mean centred accuracy {results[name]['mean_centered']:.4f}")
            for label, r in results[name]["tasks"].items():
                lines.append(f"  {label:<36} accuracy {r['accuracy']:.4f}  baseline {r['random_baseline']:.3f}  "
                             f"centred {r['centered']:+.4f}  ({r['examples']} examples)")
    for prompt, text in results.get("samples", {}).items():
        lines.append(f"sample {prompt!r} -> {text!r}")
    return "\n".join(lines)

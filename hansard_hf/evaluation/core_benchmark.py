"""CORE (DCLM) in-context evaluation, as nanochat scores it, for any causal LM with its tokenizer.

The bundle is a local folder in the DCLM / nanochat layout: `core.yaml` (a list `icl_tasks` of label, dataset_uri,
num_fewshot, icl_task_type, continuation_delimiter), `eval_data/<dataset_uri>` JSON lines and
`eval_meta_data.csv` (columns `Eval Task`, `Random baseline` in percent). Multiple choice and schema items are
scored by the lowest mean loss over the continuation, language modelling by an exact greedy match; the score of a
task is its centred accuracy `(acc - b) / (1 - b)` and CORE is their mean.
"""

import csv
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from ..distributed import rank_and_world, reduce_across_processes, sharded

logger = logging.getLogger(__name__)
BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
TASK_TYPES = ("multiple_choice", "schema", "language_modeling")


@dataclass
class Task:
    """One in-context task: its examples and how to prompt and score them."""

    label: str
    task_type: str
    num_fewshot: int
    delimiter: str
    examples: list[dict]
    random_baseline: float  # a fraction, e.g. 0.25 for 4 choices


def load_bundle(folder, max_per_task: int | None = None, tasks: list[str] | None = None) -> list[Task]:
    """The tasks of a CORE bundle, each shuffled with Random(1337) and cropped to `max_per_task` (nanochat's way)."""
    folder = Path(folder)
    if not (folder / "core.yaml").exists():
        raise FileNotFoundError(
            f"No CORE eval bundle at {folder} (core.yaml missing): download {BUNDLE_URL}, unzip it and pass the "
            "folder that holds core.yaml, eval_data/ and eval_meta_data.csv (--core-bundle)."
        )
    entries = yaml.safe_load((folder / "core.yaml").read_text())["icl_tasks"]
    with open(folder / "eval_meta_data.csv", newline="", encoding="utf-8") as handle:
        baselines = {row["Eval Task"]: float(row["Random baseline"]) / 100 for row in csv.DictReader(handle)}
    loaded = []
    for entry in entries:
        if tasks is not None and entry["label"] not in tasks:
            continue
        if entry["icl_task_type"] not in TASK_TYPES:
            raise ValueError(f"{folder / 'core.yaml'}: task {entry['label']} has unknown type {entry['icl_task_type']!r}.")
        lines = (folder / "eval_data" / entry["dataset_uri"]).read_text(encoding="utf-8").splitlines()
        examples = [json.loads(line) for line in lines if line.strip()]
        random.Random(1337).shuffle(examples)
        shots = entry.get("num_fewshot", [0])
        loaded.append(Task(entry["label"], entry["icl_task_type"], shots[0] if isinstance(shots, list) else shots,
                           entry.get("continuation_delimiter", " "), examples[:max_per_task],
                           baselines.get(entry["label"], 0.0)))
    return loaded


def render_prompts(task: Task, item: dict, fewshot: list[dict]) -> list[str]:
    """nanochat's prompts: few-shot blocks joined by blank lines, then one prompt per option (for LM: the prompt
    without and with the continuation)."""
    d = task.delimiter
    if task.task_type == "multiple_choice":
        shots = "".join(f"{e['query']}{d}{e['choices'][e['gold']]}\n\n" for e in fewshot)
        return [f"{shots}{item['query']}{d}{choice}" for choice in item["choices"]]
    if task.task_type == "schema":
        shots = "".join(f"{e['context_options'][e['gold']]}{d}{e['continuation']}\n\n" for e in fewshot)
        return [f"{shots}{context}{d}{item['continuation']}" for context in item["context_options"]]
    shots = "".join(f"{e['context'].strip()}{d}{e['continuation']}\n\n" for e in fewshot)
    prompt = f"{shots}{item['context'].strip()}{d}"
    return [prompt.strip(), prompt + item["continuation"]]


def common_length(sequences: list[list[int]], from_end: bool = False) -> int:
    """Length of the common prefix (or suffix) of token sequences."""
    shortest = min(len(s) for s in sequences)
    for i in range(shortest):
        index = -1 - i if from_end else i
        if any(s[index] != sequences[0][index] for s in sequences):
            return i
    return shortest


def continuation_spans(task_type: str, tokens: list[list[int]]) -> tuple[list[list[int]], list[int], list[int]]:
    """The sequences to run and, for each, where the scored continuation starts and ends."""
    if task_type == "multiple_choice":  # options share the context: score what follows the common prefix
        start = common_length(tokens)
        return tokens, [start] * len(tokens), [len(t) for t in tokens]
    if task_type == "schema":  # contexts differ, the continuation is a shared suffix
        suffix = common_length(tokens, from_end=True)
        return tokens, [len(t) - suffix for t in tokens], [len(t) for t in tokens]
    without, with_continuation = tokens
    if with_continuation[: len(without)] != without or len(without) >= len(with_continuation):
        raise ValueError("language-modelling prompt without the continuation is not a token prefix of the full one")
    return [with_continuation], [len(without)], [len(with_continuation)]


def encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids with the BOS token prepended to each text."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [[tokenizer.bos_token_id, *x] for x in ids]


POSITION_TABLES = ("wpe", "embed_positions", "position_embeddings")  # learned absolute position embeddings


def position_limit(model) -> int | None:
    """The hard context limit of a model with learned absolute positions (GPT-2's `wpe`, OPT's `embed_positions`),
    else None: rotary models such as ours take any length, and nanochat scores their prompts whole."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and name.rsplit(".", 1)[-1] in POSITION_TABLES:
            return module.num_embeddings - getattr(module, "offset", 0)
    return None


@torch.no_grad()
def score_example(model, tokenizer, task: Task, index: int, limit: int | None = None) -> tuple[bool, bool]:
    """(right, cropped): whether the model gets example `index` of `task` right (nanochat's scoring), and whether
    the prompt had to be cropped from the left to the model's hard position `limit` (see position_limit)."""
    item = task.examples[index]
    fewshot = []
    if task.num_fewshot:
        others = [i for i in range(len(task.examples)) if i != index]
        fewshot = [task.examples[i] for i in random.Random(1234 + index).sample(others, task.num_fewshot)]
    tokens, starts, ends = continuation_spans(task.task_type, encode(tokenizer, render_prompts(task, item, fewshot)))
    crops = [max(0, len(t) - limit) for t in tokens] if limit else [0] * len(tokens)
    if any(crops):  # crop from the left (nanochat, for a model with a hard limit): the continuation is at the end
        tokens = [t[c:] for t, c in zip(tokens, crops)]
        starts, ends = [s - c for s, c in zip(starts, crops)], [e - c for e, c in zip(ends, crops)]
        if min(starts) < 1:  # the continuation alone is longer than the model's context: it cannot be scored
            logger.warning("%s example %d: continuation longer than %d tokens, counted as wrong.", task.label, index, limit)
            return False, True
    device = next(model.parameters()).device
    width = max(len(t) for t in tokens)
    input_ids = torch.full((len(tokens), width), tokenizer.bos_token_id, dtype=torch.long)
    for row, ids in enumerate(tokens):
        input_ids[row, : len(ids)] = torch.tensor(ids)
    input_ids = input_ids.to(device)
    logits = model(input_ids=input_ids).logits.float()
    if task.task_type == "language_modeling":
        start, end = starts[0], ends[0]
        return bool(torch.equal(logits[0, start - 1 : end - 1].argmax(-1), input_ids[0, start:end])), any(crops)
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
    means = [losses[row, start - 1 : end - 1].mean().item() for row, (start, end) in enumerate(zip(starts, ends))]
    return min(range(len(means)), key=means.__getitem__) == item["gold"], any(crops)


def evaluate_task(model, tokenizer, task: Task) -> tuple[float, int]:
    """(accuracy, examples cropped to the model's hard position limit) over the task's examples; under
    torch.distributed each rank takes every world-th example, except under FSDP2, where every forward needs every
    rank: each rank then scores every example (the same forwards on all of them)."""
    rank, world = (0, 1) if sharded(model) else rank_and_world()
    device, limit = next(model.parameters()).device, position_limit(model)
    counts = torch.zeros(3, dtype=torch.float64, device=device)  # right, examples, cropped
    for index in range(rank, len(task.examples), world):
        right, cropped = score_example(model, tokenizer, task, index, limit)
        counts += torch.tensor([right, 1.0, cropped], dtype=torch.float64, device=device)
    if world > 1:
        reduce_across_processes(counts)
    return (counts[0] / counts[1]).item() if counts[1] else 0.0, int(counts[2].item())


def centered(accuracy: float, baseline: float) -> float:
    return (accuracy - baseline) / (1.0 - baseline)


def evaluate_tasks(model, tokenizer, tasks: list[Task]) -> dict:
    """Per-task accuracy and centred accuracy, and their mean (CORE when the tasks are CORE's)."""
    was_training = model.training
    model.eval()
    results = {}
    for task in tasks:
        accuracy, cropped = evaluate_task(model, tokenizer, task)
        results[task.label] = {"accuracy": accuracy, "centered": centered(accuracy, task.random_baseline),
                               "random_baseline": task.random_baseline, "examples": len(task.examples),
                               "cropped": cropped}
        if cropped:
            logger.warning("%s: %d of %d prompts cropped from the left to the model's %d positions.", task.label,
                           cropped, len(task.examples), position_limit(model))
    model.train(was_training)
    mean = sum(r["centered"] for r in results.values()) / len(results) if results else float("nan")
    return {"mean_centered": mean, "tasks": results}

"""What a run checks before any expensive work (tokenizer training, data preparation, the model): the device and
precision it asks for, the parallelism the launch got, the corpus, the experiment tracker, and on a CPU the
plan's time. The main process checks, every process gets the verdict (hansard_hf.distributed): a bad setup is one
message naming the fix, printed once."""

import netrc
import os
import time
from urllib.parse import urlparse

import torch

from .data import INDEX_FILE, Corpus, is_hub_dataset
from .distributed import on_main_process
from .layout import check_launch
from .budget import step_plan
from .settings import Budget
from .plan import plan
from .recipe import Recipe

CPU_EFFICIENCY = 0.5  # training FLOP/s over fp32 matmul FLOP/s on a CPU (tiny recipe, 2-core EPYC: 0.44)
SLOW_HOURS = 1.0  # a CPU run the plan says takes longer than this gets a warning pointing to the tiny recipe
STOP_HOURS = 24.0  # ... and longer than this does not start (allow_slow_cpu=true starts it)
OFFLINE_MODES = {"offline", "disabled", "dryrun"}


def check_device(recipe: Recipe) -> None:
    """The precision and device the recipe asks for exist here."""
    s = recipe.settings
    gpu = torch.cuda.is_available() and not s["use_cpu"]
    for precision in ("bf16", "fp16"):
        if s[precision] and not gpu and not s["use_cpu"]:
            raise ValueError(f"{recipe.path}: {precision}=true asks for a GPU and this machine has none (torch sees no "
                             "CUDA device): add --use_cpu=true --bf16=false --fp16=false to train on the CPU, or use the "
                             "CPU-sized recipe: hansard-hf train tiny.")
    if s["bf16"] and gpu and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{recipe.path}: bf16=true and this GPU has no bf16: add --bf16=false.")


def check_batch(recipe: Recipe) -> None:
    """The batch and step arithmetic works out for this many processes (before the tokenizer and the data, not
    after): the Trainer's own `step_plan`."""
    from accelerate import PartialState

    s = recipe.settings
    try:
        step_plan(Budget.of(s), recipe.model_config(), PartialState().num_processes, s["max_steps"])
    except ValueError as error:
        raise ValueError(f"{recipe.path}: {error}") from None


def check_corpus(corpus: Corpus, parse: bool = False) -> None:
    """The corpus is there: local files exist and are readable (ParlParse day files look like day files and the
    selection keeps some; with `parse`, when the tokenizer or data is still to be made, each parses whole), a Hub
    dataset answers."""
    if not is_hub_dataset(corpus.source):
        corpus.check(parse)  # names the missing file, folder or glob, the bad day file, the empty selection
        return
    fix = ("point --dataset=PATH (train_hansard.sh: DATASET=PATH) at local Hansard files (JSONL, JSON, Parquet, "
           "text, or ParlParse scrapedxml day files: a file, folder or glob), e.g. "
           "--dataset=../shared/data/hansard/hansard_debates.jsonl")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ValueError(f"dataset {corpus.source}: HF_HUB_OFFLINE is set, so the Hub is not asked: {fix}.")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        HfApi().dataset_info(corpus.source, timeout=10)
    except RepositoryNotFoundError:
        raise ValueError(f"dataset {corpus.source}: no such dataset on the Hub (or a private one: `hf auth login`); "
                         f"check the id, or {fix}.") from None
    except Exception as error:  # noqa: BLE001 - any network failure: the message says which
        raise ValueError(f"dataset {corpus.source}: the Hugging Face Hub cannot be reached ({type(error).__name__}: "
                         f"{error}); {fix}.") from None


def wandb_credentials() -> bool:
    """Whether wandb has an API key where it looks: WANDB_API_KEY, an identity token file, or the netrc entry that
    `wandb login` writes."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def tracker_environment(recipe: Recipe) -> tuple[dict, str | None]:
    """(environment to set, notice): wandb without credentials logs offline, unless WANDB_MODE=online says
    otherwise (then it is an error)."""
    report_to = recipe.report_to()
    if not ("wandb" in report_to or "all" in report_to):
        return {}, None
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in OFFLINE_MODES or wandb_credentials():
        return {}, None
    if mode == "online":
        raise ValueError("WANDB_MODE=online and wandb has no API key: run `wandb login` (or set WANDB_API_KEY), or "
                         "log offline (unset WANDB_MODE), or --report_to=none.")
    return {"WANDB_MODE": "offline"}, (
        "wandb: no API key (`wandb login` or WANDB_API_KEY), so this run logs offline to ./wandb; upload it later with "
        "`wandb sync --sync-all` (run in this folder), or set WANDB_MODE=online to require online logging.")


def cpu_flops_per_second(seconds: float = 0.3) -> float:
    """fp32 matmul FLOP/s of this machine, measured now."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * 1024**3 * count / (time.perf_counter() - start)


def cpu_notice(recipe: Recipe) -> str | None:
    """On a CPU: the plan's time here, with a pointer to the tiny recipe when it is long; a run the plan says takes
    more than a day here stops before it starts, unless the recipe says allow_slow_cpu."""
    if torch.cuda.is_available() and not recipe.settings["use_cpu"]:
        return None
    p = plan(recipe, gpus=1)
    speed = cpu_flops_per_second() * CPU_EFFICIENCY
    hours = p.total_flops / speed / 3600
    minutes = round(hours * 60)
    when = (f"{hours / 24:,.1f} days" if hours >= 48 else f"{hours:,.1f} hours" if hours >= 1 else
            f"{minutes} minutes" if minutes > 1 else "a minute" if minutes == 1 else "under a minute")
    text = (f"{recipe.path} on this CPU: ~{when} by the plan ({p.total_flops:.3g} FLOPs for {p.steps:,} steps at "
            f"~{speed / 1e9:.0f} GFLOP/s, half this machine's fp32 matmul speed measured now).")
    if hours > STOP_HOURS and not recipe.values.get("allow_slow_cpu"):
        raise ValueError(f"{text} Stopped before it started: train the CPU-sized recipe (hansard-hf train tiny), run "
                         "this one on GPUs (hansard-hf plan shows their time), or start it here anyway with "
                         "--allow_slow_cpu=true.")
    if hours > SLOW_HOURS:
        text += " For a CPU-sized run: hansard-hf train tiny. Going on; Ctrl-C stops."
    return text


def data_ready(recipe: Recipe) -> bool:
    """Whether the recipe's tokenizer and prepared data exist (then the corpus is not read again)."""
    return (recipe.tokenizer_dir / "tokenizer.json").exists() and (recipe.data_dir / INDEX_FILE).exists()


def preflight(recipe: Recipe) -> list[str]:
    """Check everything a run needs before expensive work; returns the notices to print (main process only), sets the
    environment the checks chose (every process), raises one error naming the fix."""

    def check():
        check_device(recipe)
        check_launch()
        check_batch(recipe)
        check_corpus(recipe.corpus, parse=not data_ready(recipe))
        environment, notice = tracker_environment(recipe)
        return environment, [n for n in (notice, cpu_notice(recipe)) if n]

    environment, notices = on_main_process(check)
    os.environ.update(environment)
    return notices

"""Shared fixtures. Tests never reach the network: the Hub is offline and caches live in a temporary folder."""

import os
import subprocess
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="hansard-hf-tests-hf-home-"))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM  # noqa: E402

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens on a machine without a GPU")


def offline_env(home=None, **extra) -> dict[str, str]:
    """The environment of a test's subprocess: this one's, with the Hub offline, `home` as HANSARD_HF_HOME (when
    given) and `extra` added."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", **({"HANSARD_HF_HOME": str(home)} if home else {}),
            **{key: str(value) for key, value in extra.items()}}


LAUNCHERS = {"accelerate": "accelerate.commands.launch", "torchrun": "torch.distributed.run"}
TESTS = os.path.dirname(os.path.abspath(__file__))


def launch_command(launcher: str, *arguments) -> list[str]:
    """`accelerate launch ARGUMENTS` or `torchrun ARGUMENTS`, run by this interpreter: the tests' one way to start
    several processes."""
    return [sys.executable, "-m", LAUNCHERS[launcher], *map(str, arguments)]


def worker_env(home=None, **extra) -> dict[str, str]:
    """offline_env for a launched worker script of tests/ (which imports conftest and trainer_helpers)."""
    return offline_env(home, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]), **extra)


def cli(*arguments, cwd=None, **environment) -> subprocess.CompletedProcess:
    """`hansard-hf ARGUMENTS` in a fresh process, offline, standard input closed, `environment` added."""
    env = offline_env(**environment)
    return subprocess.run([sys.executable, "-m", "hansard_hf.cli", *arguments], capture_output=True, text=True,
                          cwd=cwd, env=env, stdin=subprocess.DEVNULL, timeout=600)
TINY = dict(depth=2, aspect_ratio=32, head_dim=16, vocab_size=97, max_position_embeddings=64)


def tiny_config(**overrides) -> HansardGPTConfig:
    """A 2-layer, 64-wide model: four heads of 16."""
    return HansardGPTConfig(**{**TINY, **overrides})


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every weight with noise: nanochat's zero-initialised projections would hide bugs in parity tests."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model.eval()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """300 generated debates as JSONL (tests/corpus_helpers.py): the corpus the end-to-end tests train and prepare
    on, each in a HANSARD_HF_HOME of its own."""
    from corpus_helpers import documents, write_jsonl

    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", documents(300))


@pytest.fixture
def tiny_model() -> HansardGPTForCausalLM:
    torch.manual_seed(0)
    return randomized(HansardGPTForCausalLM(tiny_config()))


@pytest.fixture
def input_ids() -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(1))

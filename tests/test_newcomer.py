"""The README's first hour, command by command, on the shared Hansard sample: each command is read from the README's
quick start (so the two cannot drift apart), run as a user would in a fresh process, and its result checked. The
training commands get fewer steps (6 + 3 instead of 150 + 150) to keep CI short."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import offline_env

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (SHARED / "data" / "hansard").exists(), reason="../shared/data/hansard is not here")]
SHORTER = {"--max_steps=300": "--max_steps=9"}  # README value -> test value
FEWER_STEPS = ["--max_steps=6", "--eval_every=6", "--save_every=3", "--eval_tokens=16384", "--core_max_per_task=16"]


def first_hour_commands() -> list[list[str]]:
    """The commands of the README's first-hour block, as argument lists (comments dropped)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start: the first hour.*?```bash\n(.*?)```", readme, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def run(command, cwd, env) -> subprocess.CompletedProcess:
    program = {"python": sys.executable, "hansard-hf": str(Path(sys.executable).with_name("hansard-hf"))}
    command = [program.get(command[0], command[0]), *(SHORTER.get(a, a) for a in command[1:])]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_the_readme_first_hour(tmp_path):
    commands = first_hour_commands()
    assert [c[:2] for c in commands] == [["hansard-hf", "train"], ["hansard-hf", "count-tokens"], ["hansard-hf", "eval"],
                                         ["hansard-hf", "export"], ["python", "-c"], ["hansard-hf", "train"],
                                         ["hansard-hf", "train"]]
    train, count, evaluate, export, generate, again, extend = commands
    # the README's layout: a checkout with ../shared beside it; everything it writes stays in tmp_path
    work = tmp_path / "main"
    work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    blocker = tmp_path / "no_hansard_hf" / "hansard_hf"  # on PYTHONPATH for the `pipeline` step: it must not need us
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('the exported model must load without hansard_hf')\n")
    env = offline_env(tmp_path / "home", WANDB_MODE="disabled")
    run_dir = work / "runs" / "hansard_tiny"

    trained = run(train + FEWER_STEPS, work, env)
    printed = dict(line.split(None, 1) for line in trained.stdout.splitlines()
                   if line.split(None, 1)[0] in ("run", "tokenizer", "data"))
    assert printed["run"].endswith("tiny.json -> runs/hansard_tiny") and "minute" in trained.stdout  # the CPU estimate
    tokenizer_dir, data_dir = Path(printed["tokenizer"].split(" (")[0]), Path(printed["data"])
    assert tokenizer_dir.parent == tmp_path / "home" / "tokenizers" and data_dir.parent == tmp_path / "home" / "data"
    assert json.loads((run_dir / "run_complete.json").read_text()) == {"steps": 6}
    recipe = json.loads((run_dir / "recipe.json").read_text())
    assert (recipe["tokenizer_dir"], recipe["data_dir"]) == (str(tokenizer_dir), str(data_dir))
    card = (run_dir / "README.md").read_text()
    assert "datasets:" not in card and "local files `hansard_debates.jsonl`" in card
    usage = re.search(r"```python\n(.*?)```", card, re.S).group(1)  # the card's usage code, verbatim, beside the run
    assert 'model_id = "hansard_tiny"  # this folder' in usage and str(tmp_path) not in card
    loaded = run(["python", "-c", usage], run_dir.parent, env)
    assert loaded.stdout.startswith("<|bos|>Mr. Speaker, I beg to move") and len(loaded.stdout) > 40

    counted = run(count, work, env)
    index = json.loads((data_dir / "index.json").read_text())
    assert f"data       {data_dir}" in counted.stdout
    assert re.search(rf"^train\s+{index['splits']['train']['tokens']:,}\s", counted.stdout, re.M)

    evaluated = run(evaluate + ["--max-per-task=16", "--eval-tokens=32768"], work, env)
    bpb = float(re.search(r"bits per byte (\d+\.\d+)", evaluated.stdout).group(1))
    assert 1.5 < bpb < 2.9  # learnt something: uniform over 4,096 tokens of ~4.0 bytes is 2.97
    assert "hansard_next_speech" in evaluated.stdout and "sample 'Mr. Speaker" in evaluated.stdout

    run(export, work, env)
    assert json.loads((work / "runs" / "hansard_tiny_nanochat" / "config.json").read_text())["model_type"] == "nanochat"
    generated = run(generate, work, {**env, "PYTHONPATH": str(blocker.parent)})
    assert generated.stdout.startswith("Mr. Speaker,") and len(generated.stdout.strip()) > len("Mr. Speaker,") + 10

    checkpoints = sorted(p.name for p in run_dir.glob("checkpoint-*"))
    weights = (run_dir / "model.safetensors").read_bytes()
    repeated = run(again + FEWER_STEPS, work, env)
    assert "already finished at step 6 (model" in repeated.stdout and "--max_steps=12" in repeated.stdout
    assert sorted(p.name for p in run_dir.glob("checkpoint-*")) == checkpoints  # nothing trained, nothing written
    assert (run_dir / "model.safetensors").read_bytes() == weights

    run(extend, work, env)
    assert json.loads((run_dir / "run_complete.json").read_text()) == {"steps": 9}
    state = json.loads((run_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 9 and (run_dir / "checkpoint-9").is_dir()
    assert json.loads((run_dir / "recipe.json").read_text())["recipe"].endswith("tiny.json")  # provenance kept
    shutil.rmtree(tmp_path / "home")  # 10 MB of shards: do not keep them in pytest's temp folders

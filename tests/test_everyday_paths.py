"""The guard on the everyday paths: every `hansard-hf` subcommand, and `recipes/train.py` under `accelerate launch`,
run as a user runs them on a finished tiny run, once with standard input closed and once inside a pseudo-terminal,
each with an input that works and one that is wrong. It fails on any prompt, on any traceback (a user error is one
line naming the fix), and on any file we write whose permissions are not the ones the umask gives (here 027: the
group reads everything, others nothing)."""

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hansard_hf.cli import build_parser
from conftest import launch_command, offline_env

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
UMASK = 0o027
PROMPTS = ("[y/N]", "[Y/n]", "(y/n)", "Do you wish", "Press Enter", "wandb: (1)", "Enter your choice")
TRAIN = ["--tokenizer_vocab_size=512", "--vocab_size=512", "--max_seq_len=64", "--device_batch_size=4",
         "--total_batch_size=256", "--max_steps=4", "--eval_every=2", "--save_every=2", "--eval_tokens=2048",
         "--core_max_per_task=8", "--sample_every=4", "--logging_steps=1", "--disable_tqdm=true"]


def command(*arguments) -> list[str]:
    """A command as a user types it, with the umask set first."""
    program = launch_command(*arguments[:1]) if arguments[0] == "accelerate" else \
        [str(Path(sys.executable).with_name("hansard-hf"))]
    return ["sh", "-c", f"umask {UMASK:03o} && exec \"$@\"", "sh", *program, *arguments[1:]]


def in_terminal(argv, cwd, env, timeout=300) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as its standard input, output and error; (exit status, what it printed)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower,
                               start_new_session=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([leader], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:  # waiting for an answer that never comes counts as a prompt
            process.kill()
            chunks.append(b"\n[killed after %d s: waiting for input?]" % timeout)
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the command ended and closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return process.wait(), b"".join(chunks).decode(errors="replace")


def closed_stdin(argv, cwd, env, timeout=300) -> tuple[int, str]:
    done = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return done.returncode, done.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory, corpus):
    """A corpus, a finished tiny run (trained with the umask set, standard input closed) and bad inputs."""
    root = tmp_path_factory.mktemp("everyday")
    (root / "latin1.jsonl").write_bytes(b'{"id": 0, "text": "ok"}\n{"id": 1, "text": "caf\xe9"}\n')
    (root / "empty").mkdir()
    (root / "garbage").mkdir()  # nanochat's file names, random bytes inside
    (root / "garbage" / "model_000010.pt").write_bytes(os.urandom(4096))
    (root / "garbage" / "meta_000010.json").write_text('{"model_config": {}}')
    (root / "wrans.jsonl").write_text("".join(json.dumps(
        {"id": kind, "text": text, "kind": kind, "debate_id": "answers2021-03-12a#s1", "date": "2021-03-12"}) + "\n"
        for kind, text in (("question", "To ask the Chancellor what the rate of VAT is."), ("answer", "20%."))))
    env = offline_env(root / "home", WANDB_MODE="offline", HF_HOME=root / "hf_home", PYTHONUNBUFFERED=1)
    env.pop("HF_TOKEN", None)
    run = root / "runs" / "hansard_tiny"
    status, output = closed_stdin(command("hansard-hf", "train", "tiny", f"--dataset={corpus}", *TRAIN), root, env)
    assert status == 0 and (run / "run_complete.json").exists(), output[-3000:]
    return root, corpus, run, env


def cases(root: Path, corpus: Path, run: Path, out: Path) -> list[tuple[str, list[str], bool, str]]:
    """(subcommand, command, succeeds, what its output must say) for one mode; outputs go under `out`."""
    return [
        ("train", command("hansard-hf", "train", str(run)), True, "already finished at step 4"),
        ("train", command("hansard-hf", "train", "tiny", "--learning_rat=0.1"), False, "did you mean 'learning_rate'"),
        ("launch", command("accelerate", str(ROOT / "recipes" / "train.py"), str(run)), True,
         "already finished at step 4"),
        ("launch", command("accelerate", str(ROOT / "recipes" / "train.py"), "d24.json"), False,
         "bf16=true asks for a GPU"),
        ("plan", command("hansard-hf", "plan", str(run), "--gpus=1"), True, "save_total_limit=none: all 2 kept"),
        ("plan", command("hansard-hf", "plan", "tinny"), False, "did you mean tiny?"),
        ("count-tokens", command("hansard-hf", "count-tokens", str(run)), True, "By corpus size"),
        ("count-tokens", command("hansard-hf", "count-tokens"), False, "count what?"),
        ("corpus", command("hansard-hf", "corpus", str(run)), True, "by body"),
        ("corpus", command("hansard-hf", "corpus", f"--dataset={corpus}", "--bodies=comons"), False,
         "did you mean 'commons'?"),
        ("eval", command("hansard-hf", "eval", str(run), f"--dataset={corpus}", "--tasks=bpb,hansard",
                         "--eval_tokens=2048", "--max_per_task=8", f"--json={out / 'eval.json'}"), True,
         "(test split, "),
        ("eval", command("hansard-hf", "eval", str(root / "empty")), False, "no config.json there"),
        ("export", command("hansard-hf", "export", str(run), str(out / "native")), True, "wrote native NanoChat"),
        ("export", command("hansard-hf", "export", f"{run}_", str(out / "x")), False, f"did you mean {run}?"),
        ("import-nanochat", command("hansard-hf", "import-nanochat", str(out / "native"), str(out / "back")), True,
         "wrote HansardGPT checkpoint"),
        ("import-nanochat", command("hansard-hf", "import-nanochat", str(root / "garbage"), str(out / "y")), False,
         "not a file of tensors"),
        ("push", command("hansard-hf", "push", str(run), "me/hansard-tiny"), False, "HF_HUB_OFFLINE is set"),
        ("status", command("hansard-hf", "status", str(run)), True, "finished: 4 steps"),
        ("status", command("hansard-hf", "status", f"{run}_"), False, "no such run folder"),
        ("plot", command("hansard-hf", "plot", str(run), "--out", str(out / "curves.png")), True, "wrote"),
        ("plot", command("hansard-hf", "plot", str(root / "empty")), False, "no trainer_state.json"),
        ("prepare", command("hansard-hf", "prepare", f"--dataset={corpus}", f"--tokenizer={run}",
                            f"--out={out / 'data'}"), True, "prepared data in"),
        ("prepare", command("hansard-hf", "prepare", f"--dataset={corpus}l"), False, f"did you mean {corpus}?"),
        ("qa", command("hansard-hf", "qa", f"--dataset={root / 'wrans.jsonl'}", f"--out={out / 'qa'}"), True,
         "pairs      1 (1 written, 0 oral): train "),
        ("qa", command("hansard-hf", "qa", f"--dataset={corpus}", f"--out={out / 'qa_none'}"), False,
         "Q&A pairs need the fields ['kind', 'debate_id', 'text']"),
        ("sft", command("hansard-hf", "sft", str(run), f"--data={root / 'empty'}"), False, "not a dataset folder"),
        ("serve", command("hansard-hf", "serve", str(root / "empty")), False, "no config.json there"),
        ("tokenizer", command("hansard-hf", "tokenizer", "train", f"--dataset={corpus}", "--vocab-size=300",
                              f"--out={out / 'tokenizer'}"), True, "wrote a 300-token tokenizer"),
        ("tokenizer", command("hansard-hf", "tokenizer", "train", f"--dataset={root / 'latin1.jsonl'}"), False,
         "latin1.jsonl, line 2, byte 23: not valid UTF-8"),
    ]


def faults(name, argv, succeeds, expected, status, output) -> list[str]:
    """What is wrong with one command's run, as a user would see it."""
    found = []
    if (status == 0) != succeeds:
        found.append(f"exit status {status}")
    if expected not in output:
        found.append(f"does not say {expected!r}")
    if prompt := next((p for p in PROMPTS if p in output), None):
        found.append(f"prompts ({prompt!r})")
    errors = [line for line in output.splitlines() if re.match(r"hansard-hf [a-z-]+: error: ", line)]
    if len(errors) != (0 if succeeds else 1):
        found.append(f"{len(errors)} error lines")
    ours = output.split(errors[0])[0] if errors and name == "launch" else output  # accelerate's own report follows
    if "Traceback (most recent call last)" in ours:
        found.append("prints a traceback")
    return [f"{name} {' '.join(argv[5:])}: {', '.join(found)}\n{output[-1500:]}"] if found else []


def test_every_subcommand_without_prompts_tracebacks_or_private_files(world):
    root, corpus, run, env = world
    parser_commands = set(build_parser()._subparsers._group_actions[0].choices)
    modes = {"stdin closed": closed_stdin, "terminal": in_terminal}
    plans = {mode: cases(root, corpus, run, root / mode.replace(" ", "_")) for mode in modes}
    assert {name for name, *_ in plans["terminal"]} - {"launch"} == parser_commands  # a new subcommand joins here

    def run_mode(mode):
        out = root / mode.replace(" ", "_")
        out.mkdir()
        out.chmod(0o777 & ~UMASK)
        mode_env = {**env, "HANSARD_HF_HOME": str(out / "home")}  # each mode prepares its own eval data
        elsewhere = out / "cwd"  # not the run's folder: a run folder is the same run from any directory
        elsewhere.mkdir()
        elsewhere.chmod(0o777 & ~UMASK)
        found = [fault for name, argv, succeeds, expected in plans[mode]
                 for fault in faults(name, argv, succeeds, expected, *modes[mode](argv, elsewhere, mode_env))]
        return found + [f"{mode}: wrote {p} into the working directory" for p in elsewhere.iterdir()]

    with ThreadPoolExecutor(len(modes)) as pool:  # the two modes side by side: two cores
        found = [fault for faults_of_mode in pool.map(run_mode, modes) for fault in faults_of_mode]
    assert not found, "\n\n".join(found)

    results = json.loads((root / "terminal" / "eval.json").read_text())
    assert results["bpb"]["split"] == "test" and results["bpb"]["tokens"] > 0
    assert (root / "terminal" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wrong = []
    for folder in (run, root / "home", root / "stdin_closed", root / "terminal"):
        for path in [folder, *folder.rglob("*")]:
            expected = 0o777 & ~UMASK if path.is_dir() else 0o666 & ~UMASK
            if not path.is_symlink() and (mode := path.stat().st_mode & 0o777) != expected:
                wrong.append(f"{path.relative_to(root)}: {mode:o}, not {expected:o}")
    assert not wrong, "files not as the umask says:\n" + "\n".join(wrong)

"""End to end on CPU: `hansard-hf train recipes/tiny.json`, SIGKILL + resume, 2 processes, wandb offline, the Hub.

Every run trains its own small tokenizer and data from a generated corpus (no network)."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from hansard_hf import HansardGPTForCausalLM, hub
from hansard_hf.checkpoints import COMPLETE_MARKER, last_complete_checkpoint, problems, step_of
from hansard_hf.progress import read_state, status_text
from hansard_hf.plan import checkpoints_text, describe_plan, plan, stall_text
from hansard_hf.recipe import Recipe
from hansard_hf.serving import free_port
from trainer_helpers import losses, tiny_arguments
from wandb_reader import logged
from conftest import offline_env
from cli_runs import ROOT, command, logged_step, overrides, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("pipeline")
    environment = offline_env(root / "home", WANDB_MODE="offline", WANDB_DIR=root / "wandb", PYTHONUNBUFFERED=1)
    return root, corpus, environment


def train(env, out, *command_prefix, **extra) -> subprocess.CompletedProcess:
    root, _, environment = env
    done = subprocess.run(command(env, out, *command_prefix, **extra), env=environment, capture_output=True, text=True,
                          timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def trained(env):
    out = env[0] / "run"
    train(env, out)
    return out


def test_train_writes_a_loadable_model_card_and_checkpoints(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"model.safetensors", "config.json", "modeling_hansard_gpt.py", "tokenizer.json", "token_bytes.pt",
            "README.md", "training_curves.png", "recipe.json", "checkpoint-2", "checkpoint-4"} <= names
    assert all((trained / f"checkpoint-{s}" / COMPLETE_MARKER).exists() for s in (2, 4))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(trained, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(trained)
    assert model.config.vocab_size == 512 and len(tokenizer) == 512 and model.config.bos_token_id == tokenizer.bos_token_id
    card = (trained / "README.md").read_text()
    assert re.search(r"\| bits per byte \| [0-9.]+ \(validation split, 2,048 tokens\) \|", card)
    assert "| training steps | 4 |" in card and "| tokens seen | 2,048 |" in card
    assert sorted(losses(trained)) == [1, 2, 3, 4]
    recipe = json.loads((trained / "recipe.json").read_text())
    assert recipe["recipe"].endswith("tiny.json") and recipe["max_steps"] == 4


def test_the_plan_states_the_disk_a_run_keeps(trained):
    p = plan(Recipe.load(trained), gpus=1)
    assert (p.checkpoints_saved, p.checkpoints_kept, p.save_total_limit) == (2, 2, None)
    for step in (2, 4):  # weights and optimizer state: the checkpoint's bulk, as the plan counts it
        written = sum((trained / f"checkpoint-{step}" / name).stat().st_size for name in ("model.safetensors", "optimizer.pt"))
        assert p.checkpoint_bytes == pytest.approx(written, rel=0.002)
    assert p.model_bytes == pytest.approx((trained / "model.safetensors").stat().st_size, rel=0.001)
    assert "save_total_limit=none: all 2 kept" in checkpoints_text(p)
    assert "newest 1" in checkpoints_text(plan(Recipe.load(trained, ["--save_total_limit=1"]), gpus=1))
    d48 = plan(Recipe.load("d48"))  # ~26 h on 8 H100s: 2,000 steps take longer than the clock's 30 minutes
    assert d48.save_interval_minutes == 30 and d48.checkpoints_saved == math.ceil(d48.hours * 2)
    held = d48.checkpoint_bytes / 1e9 * d48.checkpoints_saved / d48.hours
    assert stall_text(d48).startswith("a checkpoint every ~30 min") and stall_text(d48).endswith(f"~{held:.0f} s per hour")
    assert "\ndisk " in describe_plan(d48) and "\nsaving       a checkpoint every" in describe_plan(d48)
    assert "22 more by the clock, each replaced by the next" in checkpoints_text(d48)


STEPS = dict(max_steps=24, save_every=4, eval_every=0)  # the runs that are killed, stopped and resumed


@pytest.fixture(scope="module")
def uninterrupted(env):
    out = env[0] / "uninterrupted"
    train(env, out, **STEPS)
    return out


def start(env, out, *command_prefix, **extra) -> subprocess.Popen:
    """`command` of STEPS, started, its stderr piped (the caller communicates)."""
    return subprocess.Popen(command(env, out, *command_prefix, **{**STEPS, **extra}), env=env[2], cwd=env[0],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def assert_same_weights(a, b, tolerance: float = 1e-6) -> None:
    a, b = HansardGPTForCausalLM.from_pretrained(a), HansardGPTForCausalLM.from_pretrained(b)
    for (name, x), y in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(x, y, atol=tolerance, rtol=tolerance, msg=lambda m: f"{name}: {m}")


# How far a resumed run's weights may end from the uninterrupted run's, each tensor relative to its norm. A resumed
# process is now and then not bit-equal (2 of about 55 local runs of the torchrun test under accelerate 1.13; twice
# in CI's oldest pass; cause not found): its last bits differ from its first step on, its tensors end up to 1.2e-5
# apart, and AdamW's eps of 1e-10 turns the last bits of a near-zero gradient into a step of up to 1.2e-4 in single
# embedding entries, so entry-wise equality is too strict. Resume bugs injected into a resumed process end far
# further apart: the Muon momentum schedule one step late 1.5e-3, the LR one step late 5e-2, AdamW's step counts
# reset 7e-2, the Muon momentum buffers lost 0.7.
RESUMED = 2e-4


def assert_near_weights(a, b, relative: float = RESUMED) -> None:
    """Each tensor of `b` within `relative` of `a`'s norm (see RESUMED)."""
    a, b = HansardGPTForCausalLM.from_pretrained(a), HansardGPTForCausalLM.from_pretrained(b)
    for (name, x), y in zip(a.named_parameters(), b.parameters()):
        apart = ((x - y).norm() / x.norm().clamp_min(1e-12)).item()
        assert apart <= relative, f"{name}: {apart:.2e} apart, {int((x - y).abs().gt(1e-5).sum())} entries by >1e-5"


def test_sigkill_resumes_from_the_last_complete_checkpoint(env, uninterrupted):
    root = env[0]
    reference = losses(uninterrupted)
    killed = root / "killed"
    process = start(env, killed)
    wait_until(process, lambda: (killed / "checkpoint-8" / COMPLETE_MARKER).exists(), "it could be killed")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists()  # it really died mid-run
    assert re.search(r"^state       dead at step \d+ of 24: its process ended without a word", status_text(killed), re.M)
    partial = killed / "checkpoint-100"  # a checkpoint whose write was cut short
    partial.mkdir()
    shutil.copy(killed / "checkpoint-8" / "model.safetensors", partial)
    train(env, killed, **STEPS)
    resumed = losses(killed)
    assert max(resumed) == 24 and min(resumed) <= 9
    for step in range(9, 25):
        assert resumed[step] == pytest.approx(reference[step], abs=1e-5), step
    assert_near_weights(uninterrupted, killed)


def test_signals_stop_the_command_at_complete_checkpoints_and_reruns_end_at_the_uninterrupted_weights(env,
                                                                                                    uninterrupted):
    """SIGUSR1, then SIGTERM repeated while the stop's checkpoint is being completed (fault injection
    by tests/faulty_cli.py): each run stops after one complete checkpoint with one line and 128 + the signal's
    number; `hansard-hf status` says so. Then SIGKILL while a stop's checkpoint is being marked: it stays incomplete.
    The run resumed after all that ends at the uninterrupted run's weights."""
    out, mark = env[0] / "signalled", env[0] / "marking"
    slow = [sys.executable, str(ROOT / "tests" / "faulty_cli.py"), "slow-marking", str(mark), "train"]
    stops = [0]
    for signum, prefix in ((signal.SIGUSR1, ()), (signal.SIGTERM, slow)):  # SIGINT: tests/test_stopping.py
        process = start(env, out, *prefix)
        wait_until(process, lambda: logged_step(out) >= stops[-1] + 2, "the signal")
        sent = time.time()
        process.send_signal(signum)
        if prefix:  # again, while the stop's checkpoint is being marked complete
            wait_until(process, lambda: mark.exists() and mark.stat().st_mtime > sent, "its checkpoint")
            process.send_signal(signum)
        stderr = process.communicate(timeout=300)[1]
        name, step = signal.Signals(signum).name, read_state(out)["step"]
        assert process.returncode == 128 + signum, stderr[-3000:]
        assert f"hansard-hf train: stopped by {name} at step {step}: {out / f'checkpoint-{step}'} is complete." in stderr
        assert "Traceback" not in stderr and step > stops[-1] and problems(out / f"checkpoint-{step}") == []
        assert f"state       stopped at step {step} of 24: by {name}; checkpoint-{step} is complete" in status_text(out)
        stops.append(step)
    assert stops[-1] < 24, stops  # every signal landed before the end
    process = start(env, out, *slow)  # SIGKILL while the stop's checkpoint is being marked: it is never complete
    wait_until(process, lambda: logged_step(out) >= stops[-1] + 2, "the signal")
    sent = time.time()
    process.send_signal(signal.SIGTERM)
    wait_until(process, lambda: mark.exists() and mark.stat().st_mtime > sent, "its checkpoint")
    process.kill()
    process.communicate()
    cut, last = Path(mark.read_text()), last_complete_checkpoint(out)
    assert problems(cut) == ["no checkpoint_complete marker (its writing was cut short)"]
    assert step_of(last) < step_of(cut) < 24
    assert re.search(r"^state       dead at step \d+ of 24", status_text(out), re.M)
    done = train(env, out, **STEPS)
    assert f"Resuming from {last} (step {step_of(last)})" in done.stderr
    assert losses(out) == losses(uninterrupted)
    assert_same_weights(uninterrupted, out, 0)
    assert status_text(out).splitlines()[1] == "state       finished: 24 steps; the model is in the folder"


def test_a_signal_to_one_of_two_processes_stops_both_at_the_same_step(env, uninterrupted):
    """SIGUSR1 reaches rank 1 only: both ranks stop after the same step, rank 0 marks the checkpoint and says why;
    the steps trained so far equal one process's (2 ranks x 4 rows = 1 x 4 rows x 2 accumulation)."""
    out = env[0] / "two_signalled"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "recipes" / "train.py")]
    process = start(env, out, *launch, use_cpu=True)
    wait_until(process, lambda: logged_step(out) >= 3, "the signal")
    ranks = {}
    for pid in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split():
        environ = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in v)
        ranks[environ.get("RANK")] = int(pid)
    os.kill(ranks["1"], signal.SIGUSR1)
    stderr = process.communicate(timeout=300)[1]
    step = read_state(out)["step"]
    assert f"stopped by SIGUSR1 at step {step}: {out / f'checkpoint-{step}'} is complete." in stderr, stderr[-3000:]
    assert process.returncode != 0 and step < 24 and last_complete_checkpoint(out) == out / f"checkpoint-{step}"
    two, one = losses(out / f"checkpoint-{step}"), losses(uninterrupted)  # resuming two ranks: the SLURM test
    assert sorted(two) == list(range(1, step + 1)) and all(two[s] == pytest.approx(one[s], abs=1e-4) for s in two)


def test_two_processes_match_one(env, trained):
    root = env[0]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "recipes" / "train.py")]
    done = train(env, root / "two", *launch, use_cpu=True)
    assert "layout     DDP, world size 2: 4 rows x 1 accumulation per process, 512 tokens per step" in done.stdout
    state = json.loads((root / "two" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 4
    two, one = losses(root / "two"), losses(trained)  # 2 ranks x 4 rows vs 1 rank x 4 rows x 2 accumulation
    assert two.keys() == one.keys()
    for step in one:
        assert two[step] == pytest.approx(one[step], abs=1e-4), step


def test_wandb_offline_run_holds_the_metrics(env):
    root = env[0]
    train(env, root / "tracked", report_to="wandb", run="hansard_tiny_test")
    runs = list((root / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    history, config = logged(runs[0])
    assert {"train/loss", "train/lrm", "train/tokens_per_sec", "train/step_time", "eval/bpb", "eval/loss"} <= history
    assert json.loads(config["recipe"])["run"] == "hansard_tiny_test"
    assert json.loads(config["matrix_lr"]) == 0.02 and json.loads(config["depth"]) == 4  # arguments and model config


class FakeHub:
    """Stands in for huggingface_hub.HfApi: an upload becomes a snapshot in a local HF cache (offline-loadable)."""

    uploads: list = []

    def __init__(self, token=None):
        pass

    def whoami(self):
        return {"name": "me"}

    def create_repo(self, repo_id, private=False, exist_ok=False):
        return repo_id

    def upload_folder(self, repo_id, folder_path, commit_message=None):
        cache = Path(os.environ["FAKE_HUB_CACHE"]) / f"models--{repo_id.replace('/', '--')}"
        revision = f"{len(FakeHub.uploads):040d}"
        shutil.copytree(folder_path, cache / "snapshots" / revision)
        (cache / "refs").mkdir(parents=True, exist_ok=True)
        (cache / "refs" / "main").write_text(revision)
        FakeHub.uploads.append(sorted(p.name for p in Path(folder_path).iterdir()))
        return f"https://huggingface.co/{repo_id}/commit/{revision}"


def card_usage(card: str) -> str:
    """The model card's usage code, verbatim."""
    return card.split("```python\n", 1)[1].split("```", 1)[0]


def run_as_a_user(code: str, environment: dict, *args, cwd=None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with stdin closed (a prompt would fail) and check it neither prompts nor
    warns about the model type, and never imports hansard_hf."""
    code += "\nimport sys\nassert 'hansard_hf' not in sys.modules\n"
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=environment, timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Do you wish to run the custom code" not in done.stdout + done.stderr
    assert "You are using a model of type" not in done.stdout + done.stderr
    return done


# greedy tokens with and without the KV cache, from the model and tokenizer the usage code loaded
SAME_WITH_AND_WITHOUT_CACHE = """
ids = tokenizer("<|bos|>The House", return_tensors="pt", add_special_tokens=False).input_ids
cached = model.generate(ids, max_new_tokens=12, do_sample=False, use_cache=True)
plain = model.generate(ids, max_new_tokens=12, do_sample=False, use_cache=False)
assert cached.shape[1] > ids.shape[1] and (cached == plain).all(), (cached, plain)
"""


def test_run_folder_card_usage_works_verbatim(env, trained):
    card = (trained / "README.md").read_text()
    assert f'model_id = "{trained.name}"  # this folder' in card and str(trained.resolve()) not in card
    done = run_as_a_user(card_usage(card) + SAME_WITH_AND_WITHOUT_CACHE, env[2], cwd=trained.parent)
    assert done.stdout.startswith("<|bos|>Mr. Speaker, I beg to move")


def test_push_uploads_what_a_user_needs_and_it_loads(env, trained, monkeypatch):
    root = env[0]
    monkeypatch.setenv("FAKE_HUB_CACHE", str(root / "hub"))
    monkeypatch.setenv("HF_TOKEN", "hf_fake")  # the token check is local; the Hub's answer to it is the fake's
    monkeypatch.setattr(hub, "HfApi", FakeHub)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)  # the tests' offline mode; the fake is the Hub
    hub.push(trained, "me/hansard-tiny")
    assert FakeHub.uploads[-1] == sorted([
        "README.md", "config.json", "configuration_hansard_gpt.py", "generation_config.json", "model.safetensors",
        "modeling_hansard_gpt.py", "token_bytes.pt", "tokenizer.json", "tokenizer_config.json", "training_curves.png"])
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    model = HansardGPTForCausalLM.from_pretrained(trained)
    torch.save({"ids": ids, "logits": model(ids).logits}, root / "expected.pt")
    user_env = {**env[2], "HF_HUB_CACHE": str(root / "hub"), "HF_HUB_OFFLINE": "1"}
    card = (root / "hub" / "models--me--hansard-tiny" / "snapshots" / f"{len(FakeHub.uploads) - 1:040d}" / "README.md")
    card = card.read_text()
    assert 'model_id = "me/hansard-tiny"\n' in card
    assert "transformers 5.23.0 to" in card and "hansard-hf export me/hansard-tiny" in card
    run_as_a_user(card_usage(card) + SAME_WITH_AND_WITHOUT_CACHE, user_env)
    run_as_a_user(textwrap.dedent("""
        import sys, torch
        from transformers import AutoModel, AutoModelForCausalLM
        expected = torch.load(sys.argv[1])
        lm = AutoModelForCausalLM.from_pretrained("me/hansard-tiny", trust_remote_code=True)
        base = AutoModel.from_pretrained("me/hansard-tiny", trust_remote_code=True)
        assert type(base).__name__ == "HansardGPTModel"
        with torch.no_grad():
            assert torch.equal(lm(expected["ids"]).logits, expected["logits"])
    """), user_env, root / "expected.pt")
    # the card's version-proof route: export the pushed repo to native NanoChat, tokenizer included
    native = root / "native-from-hub"
    done = subprocess.run([sys.executable, "-m", "hansard_hf.cli", "export", "me/hansard-tiny", str(native)],
                          capture_output=True, text=True, env=user_env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"tokenizer.json", "model.safetensors"} <= {p.name for p in native.iterdir()}
    run_as_a_user(textwrap.dedent(f"""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained("{native}")
        model = AutoModelForCausalLM.from_pretrained("{native}")
        assert type(model).__name__ == "NanoChatForCausalLM"
    """) + SAME_WITH_AND_WITHOUT_CACHE, user_env)


def test_push_checks_the_token_and_the_hub_before_staging(env, trained, monkeypatch):
    monkeypatch.setattr(hub, "stage_for_hub", lambda *a: pytest.fail("staged before the checks"))
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(env[0] / "no-login"))  # no stored token either
    with pytest.raises(ValueError, match=r"^me/x: no Hugging Face token here: `hf auth login` \(or set HF_TOKEN\)"):
        hub.push(trained, "me/x")
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    monkeypatch.setattr(hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # a closed port: the real client's failure
    with pytest.raises(OSError, match=r"^me/x: the Hugging Face Hub \(http://127.0.0.1:9\) cannot be reached "
                                      r"\(ConnectError: .*\); check the network"):
        hub.push(trained, "me/x")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="HF_HUB_OFFLINE is set"):
        hub.push(trained, "me/x")


def test_trainer_push_to_hub_ships_code_and_card_with_every_push(env, trained, tmp_path, monkeypatch):
    from transformers import trainer as trainer_module

    from hansard_hf import HansardTrainer
    from hansard_hf.data import TokenRows

    pushed = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, run_as_future=False, ignore_patterns=(), **kwargs):
            pushed.append(sorted(p.name for p in Path(folder_path).iterdir() if not p.name.startswith("checkpoint-")))
            from concurrent.futures import Future

            future = Future()
            future.set_result(None)
            return future

    monkeypatch.setattr(trainer_module, "hf_api", lambda: FakeApi())
    monkeypatch.setenv("HANSARD_HF_HOME", env[2]["HANSARD_HF_HOME"])
    recipe = json.loads((trained / "recipe.json").read_text())  # with the data folder the run used
    args = tiny_arguments(tmp_path / "out", max_seq_len=64, device_batch_size=4, total_batch_size=256, max_steps=2,
                          save_every=1, push_to_hub=True, hub_model_id="me/tiny", hub_strategy="every_save")
    model = HansardGPTForCausalLM.from_pretrained(trained)
    HansardTrainer(model=model, args=args, train_dataset=TokenRows(recipe["data_dir"], "train", 64), recipe=recipe).train()
    assert len(pushed) == 2
    for files in pushed:
        assert {"modeling_hansard_gpt.py", "configuration_hansard_gpt.py", "config.json", "model.safetensors",
                "README.md"} <= set(files)


def test_benchmarks_and_samples_ran_at_the_end_of_training(trained):
    state = json.loads((trained / "trainer_state.json").read_text())
    bench = [e for e in state["log_history"] if "hansard_metric" in e]
    assert [e["step"] for e in bench] == [4] and "bench/hansard_next_speech" in bench[0]
    assert json.loads((trained / "samples.json").read_text())["step"] == 4
    card = (trained / "README.md").read_text()
    assert "Greedy samples (step 4)" in card and "Hansard benchmark (centred) | " in card


def test_eval_command_reproduces_the_trainers_bpb(env, trained):
    root, corpus, environment = env
    out = root / "eval.json"
    command = [sys.executable, "-m", "hansard_hf.cli", "eval", str(trained), "--tasks", "bpb,hansard,sample",
               "--split", "validation", "--eval-tokens", "2048", "--max-per-task", "20", "--dataset", str(corpus),
               "--json", str(out)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    state = json.loads((trained / "trainer_state.json").read_text())
    last_bpb = [e["eval_bpb"] for e in state["log_history"] if "eval_bpb" in e][-1]
    assert results["bpb"]["bpb"] == pytest.approx(last_bpb, rel=1e-5)
    assert set(results["hansard"]["tasks"]) == {"hansard_next_speech", "hansard_who_speaks"}
    assert len(results["samples"]) == 7 and "bits per byte" in done.stdout


def test_eval_under_accelerate_splits_the_work_and_agrees(env, trained):
    root, corpus, environment = env
    outputs = {}
    for processes in (1, 2):
        out = root / f"eval{processes}.json"
        launcher = ["--multi_gpu"] if processes > 1 else []
        command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "--num_processes", str(processes),
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "hansard_hf.cli",
                   "eval", str(trained), "--tasks", "bpb,hansard", "--split", "validation", "--eval-tokens", "2048",
                   "--max-per-task", "20", "--dataset", str(corpus), "--json", str(out)]
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300, cwd=root)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[processes] = json.loads(out.read_text())
    assert outputs[2]["bpb"]["bpb"] == pytest.approx(outputs[1]["bpb"]["bpb"], rel=1e-6)
    for label, result in outputs[1]["hansard"]["tasks"].items():
        assert outputs[2]["hansard"]["tasks"][label]["accuracy"] == pytest.approx(result["accuracy"]), label


def test_kills_at_every_stage_never_lose_a_run(env):
    """SIGKILL a run the moment it is inside each stage (tokenizer training, data preparation, a checkpoint write, the
    final save: seen by its temporary files appearing), then run it to the end: the result equals an uninterrupted
    run and no partial file or folder stays behind."""
    root, _, environment = env
    steps = dict(max_steps=8, save_every=2, eval_every=0, save_total_limit=2, final_lr_frac=0.1)  # LR > 0 at the end
    train(env, root / "kill_reference", **steps)
    home, out = root / "kill_home", root / "killed_often"  # a fresh home: the tokenizer and data are built here too
    killing = {**environment, "HANSARD_HF_HOME": str(home)}
    run = command(env, out, **steps)
    inside = {  # stage -> "the run is inside it now"
        "tokenizer training": lambda: any(".partial-" in p.name for p in home.glob("tokenizers/.*")),
        "data preparation": lambda: any(".partial-" in p.name for p in home.glob("data/.*")),
        "a checkpoint write": lambda: any(p.is_dir() and not (p / COMPLETE_MARKER).exists() and p.name != "checkpoint-0"
                                          for p in out.glob("checkpoint-*")),
        "the final save": lambda: any(out.glob(".saving-*")),
    }
    caught = []
    for stage, now in inside.items():
        process = subprocess.Popen(run, env=killing, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and not now():
            time.sleep(0.0005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            caught.append(stage)
        process.wait()
    print("kills landed inside:", caught)  # recorded in bench/RESULTS.md
    assert caught[:2] == ["tokenizer training", "data preparation"]  # the long windows are always hit
    done = subprocess.run(run, env=killing, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert_near_weights(root / "kill_reference", out)
    assert json.loads((out / "run_complete.json").read_text()) == {"steps": 8}  # no step past the end (was 9)
    leftovers = [p for p in [*home.rglob(".*"), *out.rglob(".*")] if ".partial-" in p.name or ".saving-" in p.name]
    assert leftovers == []


def test_a_process_lost_mid_run_is_restarted_by_torchrun_and_resumes(env, uninterrupted):
    """torchrun --max-restarts=1: the first attempt dies by SIGKILL after step 10 (tests/faulty_cli.py); torchrun
    starts it again, it resumes from checkpoint-8 and ends at the uninterrupted run's losses and weights."""
    out = env[0] / "restarted"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--max-restarts=1", "--nproc-per-node=1",
                "--rdzv-backend=c10d", "--rdzv-endpoint=127.0.0.1:0", str(ROOT / "tests" / "faulty_cli.py"),
                "killed-once", "10", "train"]
    done = train(env, out, *torchrun, **STEPS)
    assert "Resuming from" in done.stderr and f"{out / 'checkpoint-8'} (step 8)" in done.stderr, done.stderr[-3000:]
    resumed, reference = losses(out), losses(uninterrupted)
    assert resumed.keys() == reference.keys() and all(resumed[s] == pytest.approx(reference[s], abs=1e-5)
                                                      for s in reference)
    assert_near_weights(uninterrupted, out)


def test_the_slurm_script_stops_before_its_time_limit_requeues_and_the_job_resumes(env, uninterrupted):
    """train_hansard.sbatch as written, for two nodes, under stand-ins for srun and scontrol (tests/slurm_standin:
    one task per node on this host, over loopback): SLURM's USR1 before the time limit (--signal=B:USR1@300) stops
    every rank at one complete checkpoint and the script requeues the job; the requeued job runs the same script,
    resumes and ends where one process does (2 ranks x 4 rows = 1 x 4 rows x 2 accumulation)."""
    root, corpus, environment = env
    out, requeued = root / "slurm", root / "requeued"
    port = free_port()
    path = os.pathsep.join([str(ROOT / "tests" / "slurm_standin"), str(Path(sys.executable).parent), os.environ["PATH"]])
    job = {**environment, "PATH": path, "SLURM_JOB_ID": "4242", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "node[0-1]",
           "SLURM_GPUS_ON_NODE": "1", "SLURM_SUBMIT_DIR": str(ROOT), "MASTER_PORT": str(port),
           "SLURM_STANDIN_REQUEUED": str(requeued)}
    batch = ["bash", str(ROOT / "train_hansard.sbatch"), "tiny", *overrides(corpus, out, use_cpu=True, **STEPS)]
    first = subprocess.Popen(batch, env=job, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until(first, lambda: logged_step(out) >= 3, "the time limit")
    first.send_signal(signal.SIGUSR1)
    output = first.communicate(timeout=300)[0]
    step = read_state(out)["step"]
    assert first.returncode == 0 and requeued.read_text() == "4242\n", output[-3000:]
    assert f"stopped by SIGUSR1 at step {step}" in output and last_complete_checkpoint(out) == out / f"checkpoint-{step}"
    again = subprocess.run(batch, env=job, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600)
    assert again.returncode == 0 and requeued.read_text() == "4242\n", again.stdout[-3000:]
    assert f"Resuming from {out / f'checkpoint-{step}'} (step {step})" in again.stdout
    two, one = losses(out), losses(uninterrupted)
    assert two.keys() == one.keys() and all(two[s] == pytest.approx(one[s], abs=1e-4) for s in one)
    assert_same_weights(uninterrupted, out, 1e-4)

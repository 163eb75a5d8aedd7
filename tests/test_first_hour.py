"""A newcomer's first hour, point by point: recipes by name, one-line errors before expensive work, trackers that
degrade, the CPU estimate, one owner for every folder, a fast command line. The whole walk is test_newcomer.py."""

import inspect
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from hansard_hf import locations, preflight
from hansard_hf.card import model_card
from hansard_hf.configuration_hansard_gpt import HansardGPTConfig
from hansard_hf.recipe import Recipe, find_recipe, shipped_recipes
from hansard_hf.tokenization import train_tokenizer
from corpus_helpers import documents, write_jsonl
from conftest import cli, launch_command, no_gpu, offline_env

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_recipes_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    shipped = shipped_recipes()
    assert set(shipped) == {"tiny", "d16", "d24", "d36", "d48", "d80", "tiny-2026", "d16-2026", "d24-2026", "d36-2026",
                            "d48-2026", "sft", "sft-lora"}
    monkeypatch.chdir(tmp_path)  # no recipes/ folder here
    for name in ("d24", "d24.json", "recipes/d24.json"):
        assert find_recipe(name) == shipped["d24"], name
    assert json.loads(shipped["d24"].read_text()) == json.loads((ROOT / "recipes" / "d24.json").read_text())
    assert Recipe.load("d16").model_config().depth == 16


def test_a_path_wins_and_a_run_folder_means_its_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "d24.json").write_text(json.dumps({"depth": 5}))
    (tmp_path / "d24.json").write_text(json.dumps({"depth": 6}))
    assert Recipe.load("recipes/d24.json").values == {"depth": 5}
    assert Recipe.load("d24.json").values == {"depth": 6}
    assert Recipe.load("d24").values["depth"] == 24  # a bare name is not a file here: the shipped recipe
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.json").write_text(json.dumps({"recipe": "somewhere/tiny.json", "depth": 3}))
    run = Recipe.load("run", ["--max_steps=9"])
    assert run.values == {"depth": 3, "max_steps": 9, "output_dir": "run"}  # the folder is its own output_dir
    assert run.to_dict()["recipe"] == "somewhere/tiny.json"


def test_misspellings_get_a_did_you_mean(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"tinny: no such recipe file or shipped recipe \(did you mean tiny\?\)"):
        Recipe.load("tinny")
    with pytest.raises(ValueError, match="did you mean 'learning_rate' for 'learning_rat'"):
        Recipe.load("tiny", ["--learning_rat=0.1"])


@pytest.mark.slow
def test_a_built_wheel_ships_the_recipes(tmp_path):
    pytest.importorskip("setuptools")
    source = tmp_path / "source"  # build from a copy: no build/ or egg-info in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv*", ".git", "runs", "tests", "bench", "*.egg-info",
                                                                "build", "__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("hansard_hf-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    check = ("import hansard_hf.recipe as r, json; print(r.find_recipe('d24')); "
             "print(r.Recipe.load('recipes/d48.json').model_config().depth)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert done.returncode == 0, done.stderr[-3000:]
    found, depth = done.stdout.splitlines()[-2:]
    assert Path(found) == tmp_path / "site" / "hansard_hf" / "recipes" / "d24.json" and depth == "48"


def test_the_command_line_starts_without_torch():
    check = "import sys, hansard_hf.cli as c; c.build_parser(); print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    print(f"import + parser: {time.perf_counter() - start:.2f} s")  # measured, not asserted (bench/RESULTS.md)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_tokenizer_settings_are_the_tokenizers_defaults():
    defaults = {k: p.default for k, p in inspect.signature(train_tokenizer).parameters.items() if k != "texts"}
    assert defaults == locations.TOKENIZER_SETTINGS


@no_gpu
def test_bf16_without_a_gpu_stops_in_one_line_before_any_tokenizer(corpus, tmp_path):
    home = tmp_path / "home"
    done = cli("train", "d24", f"--dataset={corpus}", HANSARD_HF_HOME=str(home))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "bf16=true asks for a GPU" in lines[0], done.stderr
    assert "--use_cpu=true --bf16=false" in lines[0] and "hansard-hf train tiny" in lines[0]
    assert not home.exists()  # nothing trained, nothing prepared


def test_batch_arithmetic_is_checked_before_any_tokenizer(corpus, tmp_path):
    home = tmp_path / "home"
    done = cli("train", "tiny", f"--dataset={corpus}", "--total_batch_size=1000", HANSARD_HF_HOME=str(home))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "tiny.json: total_batch_size=1000 is not a multiple of max_seq_len x world_size = 256 x 1" in lines[0]
    assert not home.exists()


def test_no_hub_means_one_line_naming_dataset_path(tmp_path, monkeypatch):
    done = cli("train", "tiny", HANSARD_HF_HOME=str(tmp_path / "home"))  # the Hub corpus with HF_HUB_OFFLINE=1
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "HF_HUB_OFFLINE" in lines[0] and "--dataset=PATH" in lines[0]
    assert "train_hansard.sh: DATASET=PATH" in lines[0]

    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    recipe = Recipe.load("tiny")
    asked = []

    def unreachable(self, repo_id, timeout=None):  # the wire: what a machine without network answers
        asked.append((repo_id, timeout))
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(HfApi, "dataset_info", unreachable)
    with pytest.raises(ValueError, match=r"common-pile/uk_hansard: the Hugging Face Hub cannot be reached "
                                         r"\(ConnectionError: .*\); point --dataset=PATH"):
        preflight.check_corpus(recipe.corpus)
    assert asked == [("common-pile/uk_hansard", 10)]

    def missing(self, repo_id, timeout=None):
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # its constructor wants an HTTP response
        Exception.__init__(error, "404")
        raise error

    monkeypatch.setattr(HfApi, "dataset_info", missing)
    with pytest.raises(ValueError, match="no such dataset on the Hub.*--dataset=PATH"):
        preflight.check_corpus(recipe.corpus)
    with pytest.raises(FileNotFoundError, match="missing.jsonl: no such file"):
        preflight.check_corpus(Recipe.load("tiny", {"dataset": str(tmp_path / "missing.jsonl")}).corpus)


@pytest.fixture
def no_wandb_credentials(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.setenv(name, "")  # recorded, so that what preflight sets is undone after the test
        monkeypatch.delenv(name)
    (tmp_path / "netrc").write_text("machine example.org login me password secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def test_wandb_without_credentials_logs_offline_with_a_notice(corpus, no_wandb_credentials, monkeypatch):
    recipe = Recipe.load("tiny", {"dataset": str(corpus), "report_to": "wandb", "max_steps": 3})
    notices = preflight.preflight(recipe)
    assert os.environ["WANDB_MODE"] == "offline"
    (notice,) = [n for n in notices if n.startswith("wandb")]
    assert "no API key" in notice and "wandb sync --sync-all" in notice

    monkeypatch.setenv("WANDB_MODE", "online")  # asked for online explicitly: an error, not a silent change
    with pytest.raises(ValueError, match="WANDB_MODE=online and wandb has no API key.*--report_to=none"):
        preflight.tracker_environment(recipe)
    no_wandb_credentials.write_text("machine api.wandb.ai login user password key\n")  # what `wandb login` writes
    assert preflight.tracker_environment(recipe) == ({}, None)
    monkeypatch.delenv("WANDB_MODE")
    assert preflight.tracker_environment(Recipe.load("tiny", {"report_to": "none"})) == ({}, None)


@no_gpu
def test_cpu_runs_are_told_the_plans_time_here_and_runs_of_days_stop_before_they_start():
    with pytest.raises(ValueError, match=r"d16.json on this CPU: ~[0-9.,]+ days by the plan \(1.66e\+18 FLOPs for 4,480 "
                                         r"steps.*Stopped before it started: .*hansard-hf train tiny.*--allow_slow_cpu=true"):
        preflight.cpu_notice(Recipe.load("d16", {"use_cpu": True, "bf16": False}))
    d16 = preflight.cpu_notice(Recipe.load("d16", {"use_cpu": True, "bf16": False, "allow_slow_cpu": True}))
    days = float(d16.split("~")[1].split(" days")[0].replace(",", ""))
    assert days > 2 and "hansard-hf train tiny. Going on" in d16
    tiny = preflight.cpu_notice(Recipe.load("tiny", {"max_steps": 5}))
    assert "minute" in tiny and "hansard-hf train tiny" not in tiny


def test_recipes_and_the_command_line_agree_on_folders(corpus, tmp_path):
    home = tmp_path / "home"
    done = cli("prepare", f"--dataset={corpus}", HANSARD_HF_HOME=str(home))
    assert done.returncode == 0, done.stderr
    os.environ["HANSARD_HF_HOME"] = str(home)
    try:
        recipe = Recipe.load("d24", {"dataset": str(corpus)})
        assert f"prepared data in {recipe.data_dir}" in done.stdout  # the recipe finds what prepare made
        assert (recipe.tokenizer_dir / "tokenizer.json").exists() and recipe.tokenizer_dir.parent == home / "tokenizers"
    finally:
        del os.environ["HANSARD_HF_HOME"]
    counted = cli("count-tokens", "d24", f"--dataset={corpus}", "--json", HANSARD_HF_HOME=str(home), WANDB_MODE="offline")
    assert counted.returncode == 0, counted.stderr
    result = json.loads(counted.stdout)
    index = json.loads((Path(result["data_dir"]) / "index.json").read_text())
    assert result["splits"]["train"]["tokens"] == index["splits"]["train"]["tokens"] > 0 and result["seed_depth"] == 16

    # `prepare` of another corpus with the defaults leaves the first one's tokenizer and data as they were
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    other = write_jsonl(tmp_path / "other.jsonl", documents(50, seed=7))
    assert cli("prepare", f"--dataset={other}", HANSARD_HF_HOME=str(home)).returncode == 0
    assert {p: p.read_bytes() for p in before} == before
    assert len(list((home / "data").iterdir())) == 2 and len(list((home / "tokenizers").iterdir())) == 2


def test_prepare_into_a_users_folder_is_one_line_and_touches_nothing(corpus, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    done = cli("prepare", f"--dataset={corpus}", f"--out={folder}", HANSARD_HF_HOME=str(tmp_path / "home"))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and lines[-1].startswith("hansard-hf prepare: error:") and "--replace" in lines[-1]
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"] and (folder / "thesis.tex").read_text() == "years of work"


def test_count_tokens_says_what_is_missing(corpus, tmp_path):
    home = str(tmp_path / "home")
    done = cli("count-tokens", "tiny", f"--dataset={corpus}", HANSARD_HF_HOME=home)
    assert done.returncode == 1 and "is not trained yet" in done.stderr and "hansard-hf train tiny" in done.stderr
    done = cli("count-tokens", HANSARD_HF_HOME=home)
    assert done.returncode == 1 and "count what?" in done.stderr


def test_model_card_names_the_real_corpus_and_what_each_figure_was_measured_on(tmp_path):
    history = [{"step": 3, "eval_bpb": 1.7812, "eval_tokens": 65_536}, {"step": 3, "hansard_metric": 0.05,
                                                                        "hansard_examples": 1_000}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 3, "log_history": history}))
    config = HansardGPTConfig(depth=2, vocab_size=256)
    hub = model_card(tmp_path, config, {"dataset": "common-pile/uk_hansard"}, repo_id="me/model")
    assert "datasets: [common-pile/uk_hansard]\n---" in hub and "huggingface.co/datasets/common-pile/uk_hansard" in hub
    assert "datasets: [common-pile/uk_hansard]" in model_card(tmp_path, config, {}, repo_id="me/model")  # the default
    assert 'model_id = "me/model"\n' in hub
    assert "| bits per byte | 1.7812 (validation split, 65,536 tokens) |" in hub
    assert "| Hansard benchmark (centred) | 0.0500 (test split, 1,000 examples) |" in hub
    assert "| CORE (centred) | not measured |" in hub
    local = model_card(tmp_path, config, {"dataset": "../shared/data/hansard/hansard_debates.jsonl"})
    assert "datasets:" not in local and "local files `hansard_debates.jsonl`" in local
    assert f'model_id = "{tmp_path.name}"  # this folder' in local and str(tmp_path) not in local  # no absolute path
    assert "pip install hansard-hf" not in local and "not on PyPI" in local


@pytest.mark.slow
@no_gpu
def test_under_accelerate_an_error_is_printed_once(corpus, tmp_path):
    launch = launch_command("accelerate", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                            "--mixed_precision", "no", "--dynamo_backend", "no", ROOT / "recipes" / "train.py")
    env = offline_env(tmp_path / "home")
    for arguments, message in ((["d24", f"--dataset={corpus}"], "bf16=true asks for a GPU"),  # not even --use_cpu
                               (["d24.json", "--use_cpu=true", "--bf16=false"], "HF_HUB_OFFLINE is set")):
        done = subprocess.run([*launch, *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, timeout=300)
        assert done.returncode != 0
        errors = [line for line in done.stdout.splitlines() if "hansard-hf train: error:" in line]
        assert len(errors) == 1 and errors[0].startswith("hansard-hf") and message in errors[0], done.stdout[-3000:]
        assert "Traceback" not in done.stdout.split("hansard-hf train: error:")[0]  # no rank's traceback before it
    assert not (tmp_path / "home").exists()


@pytest.mark.slow
def test_train_hansard_sh_counts_picks_and_trains_in_the_same_folders(corpus, tmp_path):
    env = offline_env(tmp_path / "home", GPUS=0, DATASET=corpus,
                      PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    small = ["--depth=2", "--max_seq_len=32", "--device_batch_size=2", "--total_batch_size=64", "--max_steps=2",
             "--eval_every=0", "--core_metric_every=0", "--torch_compile=false", "--report_to=none",
             f"--output_dir={tmp_path / 'run'}"]  # d16's recipe, cut down to seconds
    script = ["bash", str(ROOT / "train_hansard.sh")]
    stopped = subprocess.run(script, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert stopped.returncode == 1 and "RECIPE=tiny DATASET=" in stopped.stderr and "--allow_slow_cpu=true" in stopped.stderr
    assert not (tmp_path / "home").exists()  # stopped before the tokenizer and the data
    no_hub = subprocess.run(script, capture_output=True, text=True, env={**env, "DATASET": "", "RECIPE": "tiny"},
                            cwd=tmp_path, timeout=300)
    assert no_hub.returncode == 1 and "HF_HUB_OFFLINE" in no_hub.stdout and "DATASET=PATH" in no_hub.stdout
    assert "Traceback" not in no_hub.stdout + no_hub.stderr  # `accelerate launch --quiet`: our line, once
    done = subprocess.run([*script, *small, "--allow_slow_cpu=true"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert "no GPU here" in out and "training recipe d16 on 1 process(es)" in out and "d16.json on this CPU: ~" in out
    data_lines = [line for line in out.splitlines() if line.startswith("data ")]
    assert len(data_lines) == 2 and data_lines[0] == data_lines[1]  # count-tokens and the run: one folder
    assert json.loads((tmp_path / "run" / "run_complete.json").read_text()) == {"steps": 2}

"""Wrong data, damaged folders and untrusted code: each fault injected for real and met by one error naming the file
and the fix, before any work on it; nothing from a folder executes unless the user said so."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.checkpoints import mark_complete
from hansard_hf.data import Corpus, TokenRows, prepare, read_index
from hansard_hf.evaluation.evaluate_checkpoint import load_checked
from hansard_hf.files import atomic_directory, remove_leftovers
from hansard_hf.tokenization import TOKEN_BYTES_FILE, load_token_bytes, save_tokenizer, train_tokenizer
from corpus_helpers import corpus_with_tokenizer, documents
from conftest import offline_env


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    corpus_with_tokenizer(root, vocab_size=400)
    prepare(Corpus(str(root / "corpus.jsonl")), root / "tok", root / "data", shard_tokens=2000)
    return root


def damaged_copy(prepared, tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for file in (prepared / "data").iterdir():
        (data / file.name).write_bytes(file.read_bytes())
    return data


def first_train_shard(data: Path) -> Path:
    return data / read_index(data)["splits"]["train"]["shards"][0]["file"]


def flip_a_byte(path: Path, mask: int) -> None:
    """The same size, one byte different: what a bad disk or a stray write leaves, and no size check sees."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 | 1] ^= mask  # an odd byte: the high byte of a little-endian uint16 id
    path.write_bytes(bytes(data))


SHARD_FAULTS = {  # what is done to the first train shard -> what the error says
    "cut to an even size": (lambda f: f.write_bytes(f.read_bytes()[:200]), "has 200 bytes"),
    "cut to an odd size": (lambda f: f.write_bytes(f.read_bytes()[:201]), "has 201 bytes"),
    "grown": (lambda f: f.write_bytes(f.read_bytes() + b"\0\0"), "bytes; index.json says"),
    "deleted": (lambda f: f.unlink(), "is missing"),
    "one byte flipped, still valid ids": (lambda f: flip_a_byte(f, mask=0x01), "changed after it was written"),
    "ids past the vocabulary": (lambda f: flip_a_byte(f, mask=0xF0), "changed after it was written"),
}


@pytest.mark.parametrize("fault", SHARD_FAULTS)
def test_a_damaged_shard_is_named_before_training(prepared, tmp_path, fault):
    data = damaged_copy(prepared, tmp_path)
    shard = first_train_shard(data)
    damage, said = SHARD_FAULTS[fault]
    damage(shard)
    with pytest.raises(ValueError, match=rf"{shard}.*{said}.*hansard-hf prepare --rebuild --out={data}"):
        TokenRows(data, "train", 16)
    TokenRows(data, "validation", 16)  # the other splits still open


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"splits": {}}', b""])
def test_a_damaged_index_is_named(prepared, tmp_path, content):
    data = damaged_copy(prepared, tmp_path)
    (data / "index.json").write_bytes(content)
    with pytest.raises(ValueError, match=rf"{data / 'index.json'} is damaged.*prepare --rebuild"):
        TokenRows(data, "train", 16)


def test_token_bytes_never_unpickle_code(tmp_path, monkeypatch):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "code ran"))

    folder = tmp_path / "tok"
    folder.mkdir()
    torch.save(Payload(), folder / TOKEN_BYTES_FILE)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # even where the environment asks torch for pickles
    with pytest.raises(Exception, match="Weights only load failed"):
        load_token_bytes(folder)
    assert not marker.exists()


EVIL_CONFIG = {"model_type": "evil_lm", "auto_map": {"AutoConfig": "evil.EvilConfig",
                                                      "AutoModelForCausalLM": "evil.EvilModel"}}
EVIL_CODE = """
from pathlib import Path
Path(__file__).with_name("code_ran").write_text("yes")
from transformers import PretrainedConfig
class EvilConfig(PretrainedConfig):
    model_type = "evil_lm"
"""


def test_eval_never_runs_a_folders_code_unless_told(tmp_path):
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(EVIL_CONFIG))
    (folder / "evil.py").write_text(EVIL_CODE)
    done = subprocess.run([sys.executable, "-m", "hansard_hf.cli", "eval", str(folder), "--tasks", "sample"],
                          capture_output=True, text=True, timeout=300, env=offline_env())
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and "holds code of its own" in lines[-1] and "--trust-remote-code" in lines[-1], done.stderr
    assert not (folder / "code_ran").exists()


@pytest.fixture
def our_checkpoint(tmp_path):
    """A small HansardGPT folder with its tokenizer, as a run saves it."""
    tokenizer = train_tokenizer((d["text"] for d in documents(40)), vocab_size=300)
    torch.manual_seed(0)
    model = HansardGPTForCausalLM(HansardGPTConfig(depth=1, head_dim=16, aspect_ratio=64, vocab_size=300,
                                                   bos_token_id=tokenizer.bos_token_id))
    folder = tmp_path / "run"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


def test_our_folders_load_without_trusting_their_code(our_checkpoint):
    folder, _ = our_checkpoint
    (folder / "modeling_hansard_gpt.py").write_text("raise RuntimeError('the folder code ran')\n")
    model, tokenizer = load_checked(folder)  # this package's classes, not the folder's copy
    assert type(model).__module__ == "hansard_hf.modeling_hansard_gpt" and len(tokenizer) == 300


def test_export_push_and_import_never_run_a_folders_code_even_when_told_yes(our_checkpoint, tmp_path):
    folder, _ = our_checkpoint
    ran = tmp_path / "code_ran"
    for name in ("configuration_hansard_gpt.py", "modeling_hansard_gpt.py"):  # what a hostile copy of our folder holds
        (folder / name).write_text(f"open({str(ran)!r}, 'a').write({name!r})\n")
    env = offline_env(HF_MODULES_CACHE=tmp_path / "modules")
    stage = (f"from hansard_hf.hub import stage_for_hub; stage_for_hub({str(folder)!r}, {str(tmp_path / 'staged')!r}, "
             "'me/x')")  # what `push` uploads, up to the wire
    for command in (["-m", "hansard_hf.cli", "export", str(folder), str(tmp_path / "native")],
                    ["-m", "hansard_hf.cli", "import-nanochat", str(tmp_path / "native"), str(tmp_path / "back")],
                    ["-c", stage]):
        done = subprocess.run([sys.executable, *command], input="y\ny\n", capture_output=True, text=True, env=env,
                              timeout=300)  # a "y" waiting for any prompt that would run the folder's code
        assert done.returncode == 0 and "[y/N]" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert not ran.exists() and (tmp_path / "staged" / "model.safetensors").exists()
    assert json.loads((tmp_path / "back" / "config.json").read_text())["model_type"] == "hansard_gpt"


def test_damaged_weights_are_named(our_checkpoint):
    folder, _ = our_checkpoint
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{folder}: the model cannot be loaded .*incomplete or damaged"):
        load_checked(folder)


def test_a_tokenizer_bigger_than_the_model_is_refused(our_checkpoint, tmp_path):
    folder, _ = our_checkpoint
    train_tokenizer((d["text"] for d in documents(40)), vocab_size=400).save_pretrained(folder)
    with pytest.raises(ValueError, match="the tokenizer has 400 tokens and the model 300"):
        load_checked(folder)


def test_a_swapped_tokenizer_in_a_checkpoint_is_refused(our_checkpoint):
    folder, tokenizer = our_checkpoint
    mark_complete(folder, 5, "0123456789abcdef")  # the manifest of a checkpoint trained with another tokenizer
    with pytest.raises(ValueError, match="trained with tokenizer 0123456789abcdef and holds tokenizer [0-9a-f]{16}"):
        load_checked(folder)


def test_leftovers_of_killed_writers_are_removed_by_the_next_writer(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".out.partial-{pid}-abc123"
    live = tmp_path / f".out.partial-{os.getpid()}-def456"  # a writer still running (this process)
    other = tmp_path / f".other.partial-{pid}-abc"  # another target's: not ours to judge here
    for folder in (stale, live, other):
        (folder / "x").parent.mkdir()
        (folder / "x").write_text("partial")
    with atomic_directory(tmp_path / "out") as tmp:
        (tmp / "done").write_text("1")
    assert not stale.exists() and live.exists() and other.exists() and (tmp_path / "out" / "done").exists()
    assert remove_leftovers(tmp_path / "other") == [other]


def test_a_full_disk_while_saving_a_tokenizer_is_one_clear_error(tmp_path, monkeypatch):
    tokenizer = train_tokenizer((d["text"] for d in documents(20)), vocab_size=300)

    def full(*args, **kwargs):
        raise Exception("No space left on device (os error 28)")  # what tokenizers' Rust writer raises

    monkeypatch.setattr(type(tokenizer.backend_tokenizer), "save", full, raising=False)
    monkeypatch.setattr(type(tokenizer), "save_pretrained", lambda self, *a, **k: full())
    with pytest.raises(OSError, match=rf"{tmp_path / 'tok'}: writing the tokenizer failed .*os error 28.*free some"):
        save_tokenizer(tokenizer, tmp_path / "tok")
    assert list(tmp_path.iterdir()) == []  # no partial folder, no half tokenizer


def test_a_full_disk_while_preparing_leaves_nothing(prepared, tmp_path, monkeypatch):
    from hansard_hf import data

    calls, original = [], data._ShardWriter.write

    def full(self, ids):  # the shard write itself fails, as on a full disk
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return original(self, ids)

    monkeypatch.setattr(data._ShardWriter, "write", full)
    with pytest.raises(OSError, match="No space left"):
        prepare(Corpus(str(prepared / "corpus.jsonl")), prepared / "tok", tmp_path / "data", shard_tokens=2000)
    assert list(tmp_path.iterdir()) == [] and len(calls) == 2

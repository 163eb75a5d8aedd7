"""Checkpoints under faults: a checkpoint is complete only when its manifest holds, broken ones are skipped with one
line, rewrites and rotation never leave nothing to resume from, the final save is atomic, one live run per folder,
and a resume with another tokenizer is refused. Each fault is injected for real (files deleted, truncated, rewritten;
an OSError raised inside a write, as a full disk raises it; a process killed while it holds the lock)."""

import errno
import json
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from transformers import Trainer, TrainerCallback

from hansard_hf import HansardGPTForCausalLM
from hansard_hf.checkpoints import COMPLETE_MARKER, OutputDirLock, last_complete_checkpoint, problems, read_marker
from hansard_hf.files import checksum
from hansard_hf.tokenization import train_tokenizer
from hansard_hf.recipe import Recipe
from hansard_hf import HansardTrainer, HansardTrainingArguments
from hansard_hf.stopping import TrainingDiverged
from conftest import tiny_config
from trainer_helpers import SEQ, PackedRows, losses, tiny_arguments

DATA = PackedRows(48, SEQ, 97)


def arguments(out, **overrides) -> HansardTrainingArguments:
    return tiny_arguments(out, **{"save_every": 2, **overrides})


def trainer(out, seed=0, output_lock=None, **overrides) -> HansardTrainer:
    torch.manual_seed(seed)
    return HansardTrainer(model=HansardGPTForCausalLM(tiny_config()), args=arguments(out, **overrides),
                          train_dataset=DATA, output_lock=output_lock)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    t = trainer(run)
    t.train()
    return run, losses(t), {k: v.clone() for k, v in t.model.state_dict().items()}


def truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def same_size_garbage(path: Path):
    path.write_bytes(b"{" * path.stat().st_size)


def flip_a_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[-len(data) // 3] ^= 0x40  # same size: only the checksum of the whole file sees it
    path.write_bytes(bytes(data))


FAULTS = {  # what is done to the newest checkpoint -> what the skip line says
    "optimizer.pt deleted": (lambda c: (c / "optimizer.pt").unlink(), "optimizer.pt is missing"),
    "optimizer.pt emptied": (lambda c: (c / "optimizer.pt").write_bytes(b""), "optimizer.pt has 0 bytes"),
    "model.safetensors truncated": (lambda c: truncate(c / "model.safetensors"), "model.safetensors has"),
    "trainer_state.json garbage": (lambda c: same_size_garbage(c / "trainer_state.json"), "trainer_state.json changed"),
    "scheduler.pt deleted": (lambda c: (c / "scheduler.pt").unlink(), "scheduler.pt is missing"),
    "rng_state.pth truncated": (lambda c: truncate(c / "rng_state.pth"), "rng_state.pth has"),
    "marker garbage": (lambda c: (c / COMPLETE_MARKER).write_text("not a manifest"), "is not a manifest"),
    "model.safetensors one byte flipped": (lambda c: flip_a_byte(c / "model.safetensors"),
                                           "model.safetensors changed after it was written"),
    "optimizer.pt one byte flipped": (lambda c: flip_a_byte(c / "optimizer.pt"), "optimizer.pt changed after"),
}


def test_every_checkpoint_carries_a_manifest_of_its_files(uninterrupted):
    run = uninterrupted[0]
    for step in (2, 4, 6):
        manifest = read_marker(run / f"checkpoint-{step}")
        assert manifest["step"] == step and problems(run / f"checkpoint-{step}") == []
        files = manifest["files"]
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth"} <= set(files)
        assert all(info["bytes"] == (run / f"checkpoint-{step}" / name).stat().st_size for name, info in files.items())
    assert not list(run.rglob(".saving-*"))


@pytest.mark.parametrize("fault", FAULTS)
def test_a_broken_checkpoint_is_skipped_in_one_line_and_the_run_resumes_exactly(uninterrupted, tmp_path, fault, caplog):
    source, reference, weights = uninterrupted
    run = tmp_path / "run"
    for step in (2, 4):  # a run killed after its step-4 checkpoint
        shutil.copytree(source / f"checkpoint-{step}", run / f"checkpoint-{step}")
    damage, said = FAULTS[fault]
    damage(run / "checkpoint-4")
    with caplog.at_level(logging.WARNING, logger="hansard_hf.checkpoints"):
        assert last_complete_checkpoint(run) == run / "checkpoint-2"
    skipped = [r.getMessage() for r in caplog.records if "Skipping" in r.getMessage()]
    assert len(skipped) == 1 and "checkpoint-4" in skipped[0] and said in skipped[0], skipped
    resumed = trainer(run, seed=1)
    resumed.train(resume_from_checkpoint=True)
    assert losses(resumed, after=2) == pytest.approx({s: reference[s] for s in (3, 4, 5, 6)}, abs=1e-6)
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, weights[name], atol=1e-6, rtol=1e-6)


def test_a_run_killed_during_its_final_save_resumes_to_its_last_step_and_trains_nothing(uninterrupted, tmp_path,
                                                                                          caplog):
    source, reference, weights = uninterrupted
    run = tmp_path / "run"
    for step in (4, 6):  # checkpoint-6 is the last step (max_steps=6): the kill came after it
        shutil.copytree(source / f"checkpoint-{step}", run / f"checkpoint-{step}")
    resumed = trainer(run, seed=1, final_lr_frac=0.5)  # a step more would move the weights
    with caplog.at_level(logging.WARNING, logger="hansard_hf.trainer"):
        resumed.train(resume_from_checkpoint=True)
    assert any(f"Resuming from {run / 'checkpoint-6'} (step 6)" in r.getMessage() for r in caplog.records)
    assert resumed.state.global_step == 6 and not (run / "checkpoint-7").exists()
    assert losses(resumed) == reference  # the history of the run, no step of its own
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, weights[name], atol=0, rtol=0)


class PoisonAt(TrainerCallback):
    """Fault injection: one weight of the first MLP becomes NaN at the end of a step, as a diverging update leaves
    it (every token passes through it: the next loss is NaN)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.get_parameter("model.layers.0.mlp.fc1.weight").view(-1)[0] = float("nan")


def test_a_non_finite_loss_stops_the_run_naming_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    t = trainer(run, save_every=2, logging_steps=1)
    t.add_callback(PoisonAt(3))
    with pytest.raises(TrainingDiverged, match=rf"^step 4: the training loss is nan: the run diverged and stopped. "
                                               rf"Its last complete checkpoint is {run / 'checkpoint-2'};"):
        t.train()
    assert last_complete_checkpoint(run) == run / "checkpoint-2" and not (run / "checkpoint-4").exists()


def test_non_finite_weights_are_never_saved_as_a_checkpoint_or_a_model(tmp_path):
    run = tmp_path / "run"
    t = trainer(run, save_every=2, logging_steps=100)  # no loss is logged: the save must see it itself
    t.add_callback(PoisonAt(3))
    with pytest.raises(TrainingDiverged, match=r"^step 4: the weights are not finite \(no checkpoint written\): .*"
                                               r"last complete checkpoint is .*checkpoint-2;"):
        t.train()
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    with pytest.raises(TrainingDiverged, match=r"the weights are not finite \(the model is not saved\)"):
        t.save_model()
    assert not (run / "model.safetensors").exists()


@pytest.mark.parametrize("setting", ["matrix_lr=NaN", "embedding_lr=Infinity", "unembedding_lr=-0.1",
                                     "warmdown_ratio=1.5", "final_lr_frac=NaN"])
def test_numeric_settings_must_be_finite_and_in_range(setting):
    name = setting.split("=")[0]
    with pytest.raises(ValueError, match=rf"^{name}=.*: must be a finite number"):
        Recipe.load("tiny", [f"--{setting}"]).training_arguments()


def test_a_manifest_from_before_whole_file_checksums_still_resumes_and_says_what_it_cannot_check(uninterrupted,
                                                                                                   tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(uninterrupted[0] / "checkpoint-4", run / "checkpoint-4")
    folder, marker = run / "checkpoint-4", run / "checkpoint-4" / COMPLETE_MARKER
    manifest = json.loads(marker.read_text())  # as written before: sha256 of files up to 16 MB, None above
    manifest["files"] = {name: {"bytes": info["bytes"], "sha256": checksum(folder / name, "sha256")
                                if name != "model.safetensors" else None} for name, info in manifest["files"].items()}
    marker.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="hansard_hf.checkpoints"):
        assert last_complete_checkpoint(run) == folder
    assert any("before whole-file checksums: model.safetensors checked by size only" in r.getMessage()
               for r in caplog.records)
    same_size_garbage(folder / "trainer_state.json")  # its sha256 still guards it
    assert problems(folder) == ["trainer_state.json changed after it was written (checksum)"]


def test_an_explicit_broken_checkpoint_is_refused_by_name(uninterrupted, tmp_path):
    checkpoint = tmp_path / "checkpoint-4"
    shutil.copytree(uninterrupted[0] / "checkpoint-4", checkpoint)
    (checkpoint / "optimizer.pt").unlink()
    with pytest.raises(ValueError, match=r"checkpoint-4 is not a complete checkpoint: optimizer.pt is missing"):
        trainer(tmp_path / "run").train(resume_from_checkpoint=str(checkpoint))


# A full disk as each writer reports it: the OS, torch.save, safetensors (the texts seen on a full 2 MB tmpfs).
FULL_DISK = {
    "OSError": OSError(errno.ENOSPC, "No space left on device"),
    "torch.save": RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
    "safetensors": SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
}


def full_disk_at(monkeypatch, method: str, call: int, error=FULL_DISK["OSError"], owner=HansardTrainer):
    """Make the `call`-th call of `owner`.`method` raise `error`, as a full disk does mid-write."""
    original, calls = getattr(owner, method), []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, method, failing)


@pytest.mark.parametrize("method, writer", [("_save_optimizer_and_scheduler", "OSError"),
                                            ("_save_optimizer_and_scheduler", "torch.save"),
                                            ("_save_rng_state", "OSError"), ("_save", "safetensors")])
def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(uninterrupted, tmp_path, monkeypatch, method, writer):
    _, reference, weights = uninterrupted
    run = tmp_path / "run"
    owner = Trainer if method == "_save" else HansardTrainer  # safetensors writes inside the Trainer's own _save
    full_disk_at(monkeypatch, method, call=2, error=FULL_DISK[writer], owner=owner)  # step 4 fails mid-write
    with pytest.raises(OSError, match=r"writing .*checkpoint-4 failed \(.*(No space left|unexpected pos).*resumes "
                                      r"from .*checkpoint-2"):
        trainer(run, save_total_limit=1).train()
    assert read_marker(run / "checkpoint-4") is None  # cut short: never resumed from
    assert problems(run / "checkpoint-2") == []  # rotation waited for a complete successor
    monkeypatch.undo()
    resumed = trainer(run, seed=1, save_total_limit=1)
    resumed.train(resume_from_checkpoint=True)
    assert losses(resumed, after=2) == pytest.approx({s: reference[s] for s in (3, 4, 5, 6)}, abs=1e-6)
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-6"]  # rotated once 6 was complete
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, weights[name], atol=1e-6, rtol=1e-6)


def test_a_rewritten_checkpoint_loses_its_marker_first(uninterrupted, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(uninterrupted[0] / "checkpoint-4", run / "checkpoint-4")  # complete, from an earlier run
    (run / "checkpoint-4" / "trainer_state.json").write_text("{}")
    full_disk_at(monkeypatch, "_save_optimizer_and_scheduler", call=2)  # this run's own step-4 checkpoint fails
    with pytest.raises(OSError):
        trainer(run).train()
    assert read_marker(run / "checkpoint-4") is None and last_complete_checkpoint(run) == run / "checkpoint-2"


def test_the_final_save_is_atomic(tmp_path, monkeypatch):
    run = tmp_path / "run"
    t = trainer(run, save_every=0, max_steps=2)
    t.train()
    t.save_model()
    before = (run / "model.safetensors").read_bytes()
    original = HansardGPTForCausalLM.save_pretrained

    def dies_midway(self, folder, *args, **kwargs):
        original(self, folder, *args, **kwargs)
        (Path(folder) / "model.safetensors").write_bytes(b"half")  # the write in progress
        raise OSError(errno.ENOSPC, "No space left on device (injected)")

    monkeypatch.setattr(HansardGPTForCausalLM, "save_pretrained", dies_midway)
    with pytest.raises(OSError):
        t.save_model()
    assert (run / "model.safetensors").read_bytes() == before  # the old file, whole
    assert not list(run.glob(".saving-*"))
    monkeypatch.undo()
    full_disk_at(monkeypatch, "_save", call=1, error=FULL_DISK["safetensors"], owner=Trainer)
    with pytest.raises(OSError, match=rf"^\[Errno 28\] writing the model to {run} failed \(.*os error 28\)"):
        t.save_model()
    assert (run / "model.safetensors").read_bytes() == before


def test_a_real_full_disk_is_one_line(tmp_path):
    """A 128 KB tmpfs (the model is 440 KB), where mounting one is allowed: safetensors' own error, as users meet it."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        t = trainer(tmp_path / "run", save_every=0, max_steps=1)
        t.train()
        with pytest.raises(OSError, match=r"writing the model to .*small failed \(\[Errno 28\] .*No space left"):
            t.save_model(str(small))
        assert not (small / "model.safetensors").exists()
    finally:
        subprocess.run(["umount", str(small)], check=True)


LOCK_HOLDER = """
import sys, time
from hansard_hf.checkpoints import OutputDirLock
with OutputDirLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_one_live_run_per_output_folder(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OSError, match="is in use by another live run"):
            trainer(run).train()
        assert not list(run.glob("checkpoint-*"))  # refused before training
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = OutputDirLock(run)
    with lock:  # a dead process holds nothing; the run's lock, handed to its Trainer, nests
        with pytest.raises(OSError, match="is in use by another live run"):
            OutputDirLock(run).acquire()  # another lock on the folder is refused, in this process too
        t = trainer(run, max_steps=2, output_lock=lock)
        t.train()
        assert t.state.global_step == 2 and lock.depth == 1
    assert lock.depth == 0 and lock.fd is None
    with OutputDirLock(run):  # released: the folder is free again
        pass


def test_resuming_with_another_tokenizer_is_refused(tmp_path):
    texts = ["Mr. Speaker, I beg to move that the Bill be now read a Second time."] * 50
    first, second = train_tokenizer(texts, vocab_size=300), train_tokenizer(texts[:10] + ["Order!"] * 40, vocab_size=300)
    assert len(first) == len(second) == 300 and first.backend_tokenizer.to_str() != second.backend_tokenizer.to_str()
    run = tmp_path / "run"
    torch.manual_seed(0)
    t = HansardTrainer(model=HansardGPTForCausalLM(tiny_config(vocab_size=300)), args=arguments(run, max_steps=2),
                       train_dataset=PackedRows(48, SEQ, 300), processing_class=first)
    t.train()
    again = HansardTrainer(model=HansardGPTForCausalLM(tiny_config(vocab_size=300)), args=arguments(run, max_steps=4),
                           train_dataset=PackedRows(48, SEQ, 300), processing_class=second)
    with pytest.raises(ValueError, match=r"checkpoint-2 was trained with tokenizer [0-9a-f]{16}; this run's is "
                                         r"[0-9a-f]{16}"):
        again.train(resume_from_checkpoint=True)

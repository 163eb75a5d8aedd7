"""Stopping on signals, saving on a clock, catching divergence, and `hansard-hf status`, in one process: real signals
sent to this process while it trains (the CLI, two processes, FSDP2 and SLURM are in test_pipeline.py and
test_fsdp.py)."""

import json
import os
import signal

import pytest
import torch
from transformers import TrainerCallback

from hansard_hf.checkpoints import last_complete_checkpoint, problems
from hansard_hf.progress import read_state, status_text
from hansard_hf.stopping import TrainingStopped
from hansard_hf import HansardTrainingArguments
from hansard_hf.stopping import TrainingDiverged
from test_checkpoints import losses, trainer


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Six steps uninterrupted, checkpoints every 2: the history and weights a stopped and resumed run must reach."""
    t = trainer(tmp_path_factory.mktemp("reference") / "run")
    t.train()
    return losses(t), {k: v.clone() for k, v in t.model.state_dict().items()}


class SignalAt(TrainerCallback):
    """Sends `signals` to this process when step `step` begins (while the step's work runs)."""

    def __init__(self, step: int, *signals):
        self.step, self.signals = step, signals

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            for signum in self.signals:
                os.kill(os.getpid(), signum)


class Watch(TrainerCallback):
    """Keeps `hansard-hf status` as it reads at the end of each step."""

    def __init__(self, folder):
        self.folder, self.seen = folder, {}

    def on_step_end(self, args, state, control, **kwargs):
        self.seen[state.global_step] = status_text(self.folder)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_a_signal_stops_at_the_step_with_a_complete_checkpoint_and_the_resume_is_exact(reference, tmp_path, signum):
    run = tmp_path / "run"
    t = trainer(run, save_every=4)  # the step-3 checkpoint is the stop's own
    t.add_callback(SignalAt(3, signum))
    handler = signal.getsignal(signum)
    with pytest.raises(TrainingStopped) as stopped:
        t.train()
    assert (stopped.value.step, stopped.value.exit_status) == (3, 128 + signum)
    assert str(stopped.value) == (f"stopped by {signal.Signals(signum).name} at step 3: {run / 'checkpoint-3'} is "
                                  "complete. Run the same command again to resume from it.")
    assert signal.getsignal(signum) == handler  # the handler there was before training is back
    assert last_complete_checkpoint(run) == run / "checkpoint-3" and problems(run / "checkpoint-3") == []
    assert read_state(run)["state"] == "stopped"
    assert f"state       stopped at step 3 of 6: by {signal.Signals(signum).name}; checkpoint-3 is complete" in status_text(run)

    resumed = trainer(run, seed=1, save_every=4)
    resumed.train(resume_from_checkpoint=True)
    assert losses(resumed) == reference[0]  # steps 1-3 from the checkpoint's history, 4-6 trained again: the same
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, reference[1][name], atol=0, rtol=0)
    assert "finished" not in status_text(run)  # the Trainer alone writes no run_complete.json (the recipe run does)


def test_repeated_signals_while_stopping_still_end_in_one_complete_checkpoint(reference, tmp_path, caplog):
    """A launcher forwards the signal its processes already got (Ctrl-C reaches the whole process group; SLURM
    signals every process of a step): the repeat is acknowledged, and the stop goes on."""
    run = tmp_path / "run"
    t = trainer(run, save_every=0)
    t.add_callback(SignalAt(2, signal.SIGINT, signal.SIGTERM, signal.SIGINT))
    with pytest.raises(TrainingStopped, match="stopped by SIGINT at step 2"):
        t.train()
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-2"] and problems(run / "checkpoint-2") == []
    assert sum("already stopping" in r.getMessage() for r in caplog.records) == 2


class Folders(TrainerCallback):
    """The checkpoint folders at the end of each step's save."""

    def __init__(self, folder):
        self.folder, self.seen = folder, {}

    def on_save(self, args, state, control, **kwargs):
        self.seen[state.global_step] = sorted(int(p.name.split("-")[1]) for p in self.folder.glob("checkpoint-*"))


def test_save_every_minutes_saves_on_a_clock_and_each_interim_checkpoint_goes_once_a_newer_one_is_complete(tmp_path):
    run = tmp_path / "run"
    t = trainer(run, save_every=4, save_every_minutes=1e-9, max_steps=9)  # the clock is due after every step
    folders = Folders(run)
    t.add_callback(folders)
    t.train()
    assert folders.seen == {1: [1], 2: [2], 3: [3], 4: [4], 5: [4, 5], 6: [4, 6], 7: [4, 7], 8: [4, 8], 9: [4, 8, 9]}
    assert all(problems(run / f"checkpoint-{s}") == [] for s in (4, 8, 9))
    limited = trainer(tmp_path / "limited", save_every=4, save_every_minutes=1e-9, max_steps=9, save_total_limit=1)
    limited.train()
    assert sorted(p.name for p in (tmp_path / "limited").glob("checkpoint-*")) == ["checkpoint-9"]
    no_checkpoints = trainer(tmp_path / "none", save_every=0, save_every_minutes=1e-9)  # save_every=0: none at all
    no_checkpoints.train()
    assert not list((tmp_path / "none").glob("checkpoint-*"))
    assert HansardTrainingArguments(output_dir=str(tmp_path)).checkpointing.save_every_minutes == 30


class SpikeAt(TrainerCallback):
    """Fault injection: the unembedding is scaled up 100 times after step `step`: the loss jumps, still finite."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.lm_head.weight.mul_(100)


def test_a_loss_far_above_its_running_median_stops_the_run_before_its_checkpoint(tmp_path):
    run = tmp_path / "run"
    t = trainer(run, save_every=3, max_steps=8, warmdown_ratio=0.0)
    t.add_callback(SpikeAt(5))
    with pytest.raises(TrainingDiverged, match=r"^step 6: the training loss is [0-9.]+, over 2x the median [0-9.]+ of "
                                               r"the last 5 logged losses \(loss_spike_factor\): the run diverged and "
                                               rf"stopped. Its last complete checkpoint is {run / 'checkpoint-3'};"):
        t.train()
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-3"]  # step 6's was never written
    assert read_state(run)["state"] == "diverged"
    assert "diverged at step 6 of 8: step 6: the training loss is" in status_text(run)

    unchecked = trainer(tmp_path / "off", save_every=0, max_steps=8, warmdown_ratio=0.0, loss_spike_factor=0)
    unchecked.add_callback(SpikeAt(5))
    unchecked.train()  # the rule is off: the spike is trained through
    spiked = losses(unchecked)
    assert spiked[6] > 2 * sorted(spiked[s] for s in range(1, 6))[2]


def test_status_reads_a_live_run_from_its_folder_and_the_logs_carry_progress(tmp_path):
    run = tmp_path / "run"
    t = trainer(run, save_every=2)
    watch = Watch(run)
    t.add_callback(watch)
    t.train()
    assert watch.seen[1].splitlines()[1].startswith("state       live: step 0 of 6")  # no log yet at step 1's end
    lines = watch.seen[3].splitlines()
    assert lines[1].startswith("state       live: step 2 of 6, last log") and f"(pid {os.getpid()} " in lines[1]
    assert lines[2].startswith("checkpoint  checkpoint-2 (step 2), written ")
    assert lines[3] == "tokens      128 of 384" and lines[4].startswith("eta         ")
    logged = [e for e in t.state.log_history if "loss" in e]
    assert [e["tokens_seen"] for e in logged] == [64 * s for s in range(1, 7)]
    assert logged[-1]["eta_s"] == 0 and all(e["elapsed_s"] > 0 for e in logged)
    state = json.loads((run / "run_state.json").read_text())
    assert (state["state"], state["step"], state["max_steps"]) == ("trained", 6, 6)
    assert "state       training done at step 6 of 6; no run_complete.json" in status_text(run)  # the Trainer alone


def test_status_of_a_folder_that_holds_no_run_is_one_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no run: no run_state.json, recipe.json or checkpoint-N"):
        status_text(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no such run folder .*\(did you mean .*run\?\)"):
        (tmp_path / "run").mkdir()
        status_text(tmp_path / "runn")
    (tmp_path / "run" / "recipe.json").write_text("{}")
    assert status_text(tmp_path / "run").splitlines()[1:] == [
        "state       not started (no run_state.json, no live run)",
        "checkpoint  none complete: a rerun starts from the beginning"]

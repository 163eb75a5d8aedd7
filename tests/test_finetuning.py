"""Fine-tuning on question-and-answer chats with TRL: nanochat's conversation format, the loss on answers only, our
MuonAdamW, held-out answers' bits per byte falling, LoRA merged back to the same logits."""

import copy
import json
import random
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from datasets import Dataset, DatasetDict

from conftest import cli, randomized
from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.finetuning import (HansardSFTConfig, HansardSFTTrainer, answer_bits_per_byte, chat_tokenizer,
                                   lora_config, load_sft_recipe, run_sft)
from hansard_hf.optimization import MuonAdamW
from hansard_hf.tokenization import save_tokenizer, train_tokenizer

DEPARTMENTS = ["Home Department", "Treasury", "Health", "Education", "Defence", "Transport"]
THINGS = ["police officers", "nurses", "teachers", "soldiers", "buses", "prisons"]


def chats(n: int, seed: int) -> list[dict]:
    """Written questions with answers in Hansard's manner: the answer restates what was asked (learnable)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        department, thing, year = rng.choice(DEPARTMENTS), rng.choice(THINGS), rng.randint(1990, 2024)
        rows.append({"messages": [
            {"role": "system", "content": f"A written question in the House of Commons. Answering: {department}."},
            {"role": "user", "content": f"To ask the Secretary of State for {department} how many {thing} there "
                                        f"were in {year}."},
            {"role": "assistant", "content": f"There were {rng.randint(100, 9999)} {thing} in {year}, according to "
                                             f"the figures of the {department}."}]})
    return rows


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A chat dataset (hansard-hf qa's layout) and an untrained tiny HansardGPT with the Hansard tokenizer."""
    root = tmp_path_factory.mktemp("sft")
    data = root / "qa"
    DatasetDict({"train": Dataset.from_list(chats(256, 0)), "validation": Dataset.from_list(chats(24, 1))}) \
        .save_to_disk(str(data))
    (data / "qa_counts.json").write_text(json.dumps({"pairs": 280, "pairs_train": 256}))
    tokenizer = train_tokenizer([m["content"] for row in chats(256, 0) for m in row["messages"]], vocab_size=400)
    save_tokenizer(tokenizer, root / "base")
    torch.manual_seed(0)
    HansardGPTForCausalLM(HansardGPTConfig(depth=2, aspect_ratio=32, head_dim=32, vocab_size=len(tokenizer),
                                           max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                                           pad_token_id=tokenizer.pad_token_id)).save_pretrained(root / "base")
    return root, data


TINY = {"max_steps": 24, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "max_length": 128,
        "use_cpu": True, "logging_steps": 4, "disable_tqdm": True, "seed": 0}


def test_nanochats_conversation_format_and_the_loss_on_the_answer_and_its_end_only(base):
    """As nanochat 10231df's render_conversation: the system message joins the user's, the mask covers the answer's
    tokens and <|assistant_end|>, nothing else."""
    from hansard_hf.tokenization import load_tokenizer

    tokenizer = chat_tokenizer(load_tokenizer(base[0] / "base"))
    messages = [{"role": "system", "content": "Answering: Treasury."}, {"role": "user", "content": "How much?"},
                {"role": "assistant", "content": "Enough."}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == \
        "<|bos|><|user_start|>Answering: Treasury.\n\nHow much?<|user_end|><|assistant_start|>Enough.<|assistant_end|>"
    assert tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True).endswith(
        "<|user_end|><|assistant_start|>")
    encoded = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    trained = [i for i, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
    assert trained == tokenizer("Enough.", add_special_tokens=False)["input_ids"] + \
        [tokenizer.convert_tokens_to_ids("<|assistant_end|>")]


def test_sft_with_muon_lowers_the_held_out_answers_bits_per_byte_and_writes_a_chat_model(base, tmp_path):
    root, data = base
    bpb = run_sft(root / "base", data, tmp_path / "tuned", "sft",
                  {**TINY, "matrix_lr": 0.02, "embedding_lr": 0.2, "unembedding_lr": 0.004})
    assert bpb["finetuned"] < 0.5 * bpb["base"], bpb  # the margin: below half the untrained model's
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tuned")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tuned")
    assert tokenizer.chat_template and model.generation_config.eos_token_id == \
        tokenizer.convert_tokens_to_ids("<|assistant_end|>")
    assert answer_bits_per_byte(model, tokenizer, chats(24, 1)) == pytest.approx(bpb["finetuned"], rel=1e-5)
    card = (tmp_path / "tuned" / "README.md").read_text()
    assert f"base_model: {root / 'base'}" in card and "280 pairs" in card and "apply_chat_template" in card \
        and "hansard-hf serve tuned" in card


def test_the_trainer_uses_muonadamw_unless_told_otherwise(base, tmp_path):
    root, data = base
    from datasets import load_from_disk

    from hansard_hf.tokenization import load_tokenizer

    tokenizer = chat_tokenizer(load_tokenizer(root / "base"))
    train = load_from_disk(str(data))["train"]
    for nanochat, kind in ((True, MuonAdamW), (False, torch.optim.AdamW)):
        args = HansardSFTConfig.from_settings(output_dir=str(tmp_path / str(nanochat)), nanochat_optimizer=nanochat,
                                              **TINY)
        trainer = HansardSFTTrainer(model=HansardGPTForCausalLM.from_pretrained(root / "base"), args=args,
                                    train_dataset=train, processing_class=tokenizer)
        assert isinstance(trainer.create_optimizer(), kind)


def test_lora_trains_and_merges_back_to_the_same_logits(base, tmp_path):
    root, data = base
    from datasets import load_from_disk

    from hansard_hf.tokenization import load_tokenizer

    tokenizer = chat_tokenizer(load_tokenizer(root / "base"))
    settings = load_sft_recipe("sft-lora", {**TINY, "max_steps": 8})
    lora = {key: settings.pop(key) for key in ("lora_r", "lora_alpha", "lora_dropout")}
    args = HansardSFTConfig.from_settings(output_dir=str(tmp_path / "lora"), **settings)
    base_model = randomized(HansardGPTForCausalLM.from_pretrained(root / "base"))  # lm_head starts at zero
    untouched = copy.deepcopy(base_model)
    trainer = HansardSFTTrainer(model=base_model, args=args, train_dataset=load_from_disk(str(data))["train"],
                                processing_class=tokenizer, peft_config=lora_config(lora))
    trainer.train()
    ids = torch.tensor([tokenizer.apply_chat_template(chats(1, 5)[0]["messages"], return_dict=True)["input_ids"]])
    model = trainer.model.eval()
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        merged = model.merge_and_unload()(input_ids=ids).logits
        untouched = untouched(input_ids=ids).logits
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)  # fp32 rounding of W + BA
    assert (adapted - untouched).abs().max() > 100 * (merged - adapted).abs().max()  # the adapter learned something


def sft_arguments(root, data, out, **settings) -> list[str]:
    """`hansard-hf sft`'s arguments for the tiny run, with `settings` as --key=value."""
    return [str(root / "base"), "--data", str(data), "--out", str(out),
            *(f"--{key}={value}" for key, value in {**TINY, **settings}.items())]


@pytest.mark.slow
def test_a_killed_fine_tuning_resumes_from_its_last_checkpoint_to_the_uninterrupted_weights(base, tmp_path):
    from safetensors.torch import load_file

    from conftest import TESTS, offline_env
    from hansard_hf.checkpoints import checkpoints

    root, data = base
    settings = {"save_steps": 8, "max_steps": 24}
    assert cli("sft", *sft_arguments(root, data, tmp_path / "whole", **settings)).returncode == 0
    killed = subprocess.run([sys.executable, f"{TESTS}/faulty_cli.py", "sft-killed", "17", "sft",
                             *sft_arguments(root, data, tmp_path / "cut", **settings)], capture_output=True,
                            text=True, env=offline_env(), stdin=subprocess.DEVNULL, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "cut" / "README.md").exists()  # no card: unfinished, and never taken for a model
    assert "dead at step 16 of 24" in cli("status", str(tmp_path / "cut")).stdout  # logged every 4 steps
    again = cli("sft", *sft_arguments(root, data, tmp_path / "cut", **settings))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming from {tmp_path / 'cut' / 'checkpoint-16'}" in again.stdout
    whole, resumed = (load_file(tmp_path / run / "model.safetensors") for run in ("whole", "cut"))
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "cut" / "README.md").is_file() and not list((tmp_path / "cut").glob(".saving-*"))
    assert "finished: 24 steps" in cli("status", str(tmp_path / "cut")).stdout
    rerun = cli("sft", *sft_arguments(root, data, tmp_path / "cut", **settings))
    assert rerun.returncode == 1 and "holds a finished fine-tuning" in rerun.stderr
    early = subprocess.run([sys.executable, f"{TESTS}/faulty_cli.py", "sft-killed", "3", "sft",
                            *sft_arguments(root, data, tmp_path / "early", **settings)], env=offline_env(),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    assert early.returncode == -signal.SIGKILL and not checkpoints(tmp_path / "early")
    shutil.copytree(data, tmp_path / "other-data")
    other = cli("sft", *sft_arguments(root, tmp_path / "other-data", tmp_path / "early", **settings))
    assert other.returncode == 1 and f"is the fine-tuning of {root / 'base'} on {data}:" in other.stderr
    again = cli("sft", *sft_arguments(root, data, tmp_path / "early", **settings))  # killed before any checkpoint
    assert again.returncode == 0 and "resuming" not in again.stdout, again.stderr[-2000:]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a run")
    foreign = cli("sft", *sft_arguments(root, data, tmp_path / "mine"))
    assert foreign.returncode == 1 and "not a fine-tuning run's" in foreign.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "not a run"


@pytest.mark.slow
def test_sft_through_accelerate_launch_on_two_processes(base, tmp_path):
    from conftest import TESTS, launch_command, offline_env

    root, data = base
    result = subprocess.run(launch_command("accelerate", "--num_processes", 2, "--cpu", f"{TESTS}/../recipes/sft.py",
                                           *sft_arguments(root, data, tmp_path / "ddp", max_steps=8,
                                                          per_device_train_batch_size=4)),
                            capture_output=True, text=True, env=offline_env(), stdin=subprocess.DEVNULL, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("held-out answers, bits per byte") == 1  # the main process speaks
    before, after = map(float, re.search(r"base ([\d.]+) -> fine-tuned ([\d.]+)", result.stdout).groups())
    assert after < before
    state = json.loads((tmp_path / "ddp" / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8 and state["train_batch_size"] == 4  # per process, two of them: 8 a step
    assert (tmp_path / "ddp" / "README.md").is_file()


def test_bad_sft_settings_are_one_clear_error(base, tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['matrix_lrr'\]\. did you mean 'matrix_lr'"):
        load_sft_recipe("sft", ["--matrix_lrr=0.1"])
    with pytest.raises(ValueError, match="lora_r > 0 trains PEFT's adapter parameters.*nanochat_optimizer=false"):
        run_sft(base[0] / "base", base[1], tmp_path / "x", "sft", {"lora_r": 4})
    with pytest.raises(ValueError, match="not a dataset folder .*; make the data with hansard-hf qa"):
        run_sft(base[0] / "base", base[0] / "base", tmp_path / "y", "sft", {})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match=r"not a HansardGPT model folder \(config.json model_type 'gpt2'\)"):
        run_sft(tmp_path / "other", base[1], tmp_path / "z", "sft", {})


def test_the_command_fine_tunes_a_folder_with_overrides_and_stdin_closed(base, tmp_path):
    root, data = base
    done = cli("sft", str(root / "base"), f"--data={data}", f"--out={tmp_path / 'chat'}", "--max_steps=4",
               "--per_device_train_batch_size=4", "--max_length=128", "--use_cpu=true", "--disable_tqdm=true")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "held-out answers, bits per byte: base " in done.stdout and f"wrote {tmp_path / 'chat'}" in done.stdout
    written = {p.name for p in (tmp_path / "chat").iterdir()}
    assert {"model.safetensors", "modeling_hansard_gpt.py", "tokenizer.json", "chat_template.jinja", "README.md",
            "token_bytes.pt"} <= written
    wrong = cli("sft", str(root / "base"), f"--data={data}", "--matrix_lrr=1")
    assert wrong.returncode != 0 and "did you mean 'matrix_lr'" in wrong.stderr

"""Supervised fine-tuning of a HansardGPT model on chat data with TRL's SFTTrainer (`hansard-hf sft`).

The conversation format is nanochat's (10231df, `tokenizer.render_conversation`), as a chat template saved with the
tokenizer: `<|bos|>`, each user turn in `<|user_start|>...<|user_end|>` (a system message joins the first user turn,
a blank line between), each assistant turn in `<|assistant_start|>...<|assistant_end|>`. The loss is on the
assistant's tokens and its `<|assistant_end|>` only (TRL's `assistant_only_loss`, from the template's generation
marks). The optimizer is ours, MuonAdamW with nanochat's groups and schedules from `args.muon`, `args.adamw` and
`args.schedule` (nanochat's chat_sft: the LRs at 0.02 of pretraining's, decaying linearly to 0), or TRL's own with
`nanochat_optimizer=false` (as a LoRA adapter needs: PEFT's parameters are not nanochat's groups).
"""

import difflib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from trl import SFTConfig, SFTTrainer

from .callbacks import RunStateFile
from .checkpoints import OutputDirLock, last_complete_checkpoint
from .distributed import on_main_process
from .files import share_as_umask
from .optimization import muon_adamw, nanochat_schedule
from .progress import RUN_COMPLETE, write_state
from .recipe import find_recipe, parse_overrides
from .saving import CrashSafeSaving
from .stopping import TrainingDiverged, refuse_non_finite
from .settings import AdamW, Muon, Schedule, flat, group_field, into_groups

CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{%- set ns.system = message['content'] + '\n\n' -%}"
    "{%- elif message['role'] == 'user' -%}<|user_start|>{{ ns.system }}{{ message['content'] }}<|user_end|>"
    "{%- set ns.system = '' -%}"
    "{%- else -%}<|assistant_start|>{% generation %}{{ message['content'] }}<|assistant_end|>{% endgeneration %}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant_start|>{%- endif -%}"
)
END_OF_ANSWER = "<|assistant_end|>"
SFT_CONCERNS = {"muon": Muon, "adamw": AdamW, "schedule": Schedule}
RUN_FILE = "sft_run.json"  # written as a fine-tuning run starts: its base and data (a rerun resumes the same run)
LORA_KEYS = {"lora_r": 0, "lora_alpha": 16, "lora_dropout": 0.0}  # lora_r > 0: train a LoRA adapter of that rank


@dataclass
class HansardSFTConfig(SFTConfig):
    """TRL's SFTConfig with nanochat's optimizer settings in their groups (`hansard_hf.settings`)."""

    muon: Muon = group_field(Muon)
    adamw: AdamW = group_field(AdamW)
    schedule: Schedule = group_field(Schedule)
    nanochat_optimizer: bool = field(default=True, metadata={"help": (
        "MuonAdamW with nanochat's groups and schedules (muon, adamw, schedule); false: TRL's own optimizer "
        "(optim, learning_rate), as a LoRA adapter needs.")})
    assistant_only_loss: bool = field(default=True, metadata={"help": "Loss on the assistant's tokens only."})
    bf16: bool | None = field(default=None, metadata={"help": (
        "bf16 autocast; none: on a GPU that has bf16 (TRL's default, true everywhere, would autocast on a CPU too).")})
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": (
        "transformers' old name of activation_checkpointing, which is off unless set (TRL's default turns it on; "
        "nanochat's chat_sft does not checkpoint).")})

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = torch.cuda.is_available() and not self.use_cpu and torch.cuda.is_bf16_supported()
        super().__post_init__()

    @classmethod
    def from_settings(cls, **settings) -> "HansardSFTConfig":
        """The config of flat settings, as recipes name them (`matrix_lr`, `max_length`, ...)."""
        return cls(**into_groups(settings, SFT_CONCERNS))

    def to_dict(self) -> dict:
        return flat(super().to_dict(), SFT_CONCERNS)


class FineTuningState(RunStateFile):
    """The run's state file, as pretraining keeps it for `hansard-hf status`: running, and the step at every log."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and "loss" in (logs or {}):
            write_state(args.output_dir, state="running", reason="", step=state.global_step, max_steps=state.max_steps)


class HansardSFTTrainer(CrashSafeSaving, SFTTrainer):
    """SFTTrainer with nanochat's MuonAdamW and schedules (unless `args.nanochat_optimizer` is false), saving as
    pretraining does: checkpoints marked complete by a manifest written last, never a non-finite model."""

    def create_model_card(self, *args, **kwargs):
        """Nothing: TRL writes its card at every checkpoint; run_sft writes the run's card (sft_card) last, as the
        mark of a finished run."""

    def create_optimizer(self, model=None):
        if self.optimizer is None and self.args.nanochat_optimizer:
            self.optimizer = muon_adamw(self.model, self.args)
        return super().create_optimizer() if self.optimizer is None else self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.args.nanochat_optimizer:
            self.lr_scheduler = nanochat_schedule(optimizer or self.optimizer, num_training_steps, self.args)
        return super().create_scheduler(num_training_steps, optimizer)


def sft_keys() -> set[str]:
    """Every key an SFT recipe takes: SFTConfig's fields, our optimizer settings by their flat names, LoRA's."""
    ours = {f.name for group_class in SFT_CONCERNS.values() for f in fields(group_class)}
    return ({f.name for f in fields(HansardSFTConfig)} - set(SFT_CONCERNS)) | ours | set(LORA_KEYS)


def load_sft_recipe(name, overrides: list[str] | dict | None = None) -> dict:
    """An SFT recipe (a shipped name, `sft` or `sft-lora`, or a JSON file) with `--key=value` overrides, every key
    checked."""
    path = find_recipe(name)
    values = json.loads(path.read_text())
    values.update(parse_overrides(overrides) if isinstance(overrides, list) else (overrides or {}))
    known = sft_keys()
    unknown = sorted(set(values) - known)
    if unknown:
        hints = "; ".join(f"did you mean {guess[0]!r} for {key!r}?" for key in unknown
                          if (guess := difflib.get_close_matches(key, known, n=1)))
        raise ValueError(f"{path}: unknown key(s) {unknown}. {hints + ' ' if hints else ''}An SFT recipe takes TRL's "
                         "SFTConfig fields, the optimizer settings (matrix_lr, ...) and lora_r/lora_alpha/lora_dropout "
                         "(the model folder and --data are the command's arguments).")
    return values


def chat_tokenizer(tokenizer):
    """The Hansard tokenizer with nanochat's conversation format as its chat template; an answer ends at
    `<|assistant_end|>` (its eos)."""
    if END_OF_ANSWER not in tokenizer.get_vocab():
        raise ValueError(f"the tokenizer has no {END_OF_ANSWER} token: fine-tuning needs the Hansard tokenizer's chat "
                         "tokens (hansard-hf tokenizer train makes them).")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.eos_token = END_OF_ANSWER
    return tokenizer


def lora_config(settings: dict):
    """PEFT's LoRA on every block matrix (attention and MLP) at rank `lora_r`; None when lora_r is 0."""
    if not settings.get("lora_r"):
        return None
    from peft import LoraConfig

    return LoraConfig(r=settings["lora_r"], lora_alpha=settings.get("lora_alpha", LORA_KEYS["lora_alpha"]),
                      lora_dropout=settings.get("lora_dropout", LORA_KEYS["lora_dropout"]), task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"])


@torch.no_grad()
def answer_bits_per_byte(model, tokenizer, rows) -> float:
    """Bits per byte of the answers of chat `rows` (their messages), given their questions: the summed loss over the
    tokens the fine-tuning trains on (the answer and its end mark), over the answers' UTF-8 bytes."""
    model.eval()
    nats, size = 0.0, 0
    for row in rows:
        encoded = tokenizer.apply_chat_template(row["messages"], return_dict=True, return_assistant_tokens_mask=True)
        ids = torch.tensor([encoded["input_ids"]], device=model.device)
        labels = torch.where(torch.tensor([encoded["assistant_masks"]], device=model.device) == 1, ids, -100)
        counted = int((labels[0, 1:] != -100).sum())
        nats += float(model(input_ids=ids, labels=labels).loss) * counted
        size += sum(len(m["content"].encode("utf-8")) for m in row["messages"] if m["role"] == "assistant")
    return nats / (math.log(2) * size)


def sft_card(out, base: str, data: str, counts: dict, bpb: dict) -> str:
    """README.md of a fine-tuned model: its base, its Q&A data, the held-out answers' bpb, and how to chat with it."""
    name = Path(out).name
    return f"""---
library_name: transformers
tags: [hansard, nanochat, sft, trl]
base_model: {base}
---
# {name}

`{base}` fine-tuned with TRL's SFTTrainer on Parliament's questions and answers (`{data}`:
{counts.get('pairs', '?')} pairs, made by `hansard-hf qa`; {counts.get('pairs_train', '?')} for training), the loss on
the answers only, in nanochat's conversation format (the chat template saved with the tokenizer).

Held-out answers (validation split), bits per byte: base {bpb['base']:.4f}, fine-tuned {bpb['finetuned']:.4f}.

## Chat with it

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{name}", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{name}")
messages = [{{"role": "system", "content": "A written question in the House of Commons. Answering: Home Department."}},
            {{"role": "user", "content": "To ask the Secretary of State for the Home Department how many police officers there are."}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
answer = model.generate(**inputs, max_new_tokens=200, do_sample=True, temperature=0.7)
print(tokenizer.decode(answer[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

Or in a browser, and through an OpenAI-compatible API (`transformers serve` underneath), from this folder:

```bash
hansard-hf serve {name}    # http://localhost:8000: ask, pick temperature and length, watch the answer stream in
```
"""


def begin_run(out: Path, base, data) -> Path | None:
    """Start or resume the fine-tuning run in `out` (its lock held): a new one in no folder or an empty one (its
    RUN_FILE written: what it fine-tunes, on what), else the last complete checkpoint (None before the first) of an
    unfinished run of the same base and data; refuses a finished run and a folder holding anything else."""
    same = {"base": str(Path(base).resolve()), "data": str(Path(data).resolve())}
    if not any(not entry.name.startswith(".") for entry in out.iterdir()):  # our lock, a killed save's leftovers
        (out / RUN_FILE).write_text(json.dumps(same, indent=1) + "\n")
        return None
    try:
        started = json.loads((out / RUN_FILE).read_text())
    except FileNotFoundError:
        raise ValueError(f"{out} holds files that are not a fine-tuning run's (no {RUN_FILE}): give another "
                         "--out.") from None
    except ValueError as error:
        raise ValueError(f"{out / RUN_FILE} is damaged ({error}): give another --out.") from None
    if (out / "README.md").is_file():
        raise ValueError(f"{out} holds a finished fine-tuning (its card, README.md, is written last): give another "
                         "--out, or delete that folder to fine-tune again.")
    if {key: started.get(key) for key in same} != same:
        raise ValueError(f"{out} is the fine-tuning of {started.get('base')} on {started.get('data')}: give those "
                         "to resume it, or another --out.")
    for stale in out.glob(".saving-*"):  # a killed save's (the lock is ours: none is in progress)
        shutil.rmtree(stale, ignore_errors=True)
    return last_complete_checkpoint(out)


def save_final(out: Path, model, tokenizer, base, card: str, steps: int) -> None:
    """The fine-tuned model, its tokenizer, the base's token-bytes table, the mark of a finished run (`hansard-hf
    status`) and the card into `out`: each file written under a hidden folder, then renamed into place, the card last
    (a folder without it is an unfinished run)."""
    from .tokenization import TOKEN_BYTES_FILE

    tmp = Path(tempfile.mkdtemp(prefix=".saving-final-", dir=out))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (Path(base) / TOKEN_BYTES_FILE).is_file():  # bits per byte of the fine-tuned model (hansard-hf eval)
            shutil.copy(Path(base) / TOKEN_BYTES_FILE, tmp / TOKEN_BYTES_FILE)
        (tmp / RUN_COMPLETE).write_text(json.dumps({"steps": steps}) + "\n")
        (tmp / "README.md").write_text(card)
        share_as_umask(tmp)
        last = [RUN_COMPLETE, "README.md"]  # the model's files first, then what says they are complete
        for path in sorted(tmp.iterdir(), key=lambda path: last.index(path.name) if path.name in last else -1):
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_sft(base, data, out, recipe: str = "sft", overrides: list[str] | dict | None = None) -> dict:
    """Fine-tune the model in folder `base` on the chat dataset `data` (`hansard-hf qa`'s folder) into `out`, with
    the SFT recipe and overrides, resuming from `out`'s last complete checkpoint if a run there was interrupted;
    returns the held-out answers' bits per byte before and after."""
    from accelerate import PartialState
    from datasets import load_from_disk

    from .modeling_hansard_gpt import HansardGPTForCausalLM
    from .tokenization import load_tokenizer

    settings = load_sft_recipe(recipe, overrides)
    lora = {key: settings.pop(key) for key in list(settings) if key in LORA_KEYS}
    if not (Path(data) / "dataset_dict.json").is_file():
        raise ValueError(f"{data}: not a dataset folder (no dataset_dict.json); make the data with hansard-hf qa.")
    dataset = load_from_disk(str(data))
    if "train" not in dataset or "messages" not in dataset["train"].column_names:
        raise ValueError(f"{data}: no train split with a messages column; make the data with hansard-hf qa.")
    config = Path(base) / "config.json"
    if not config.is_file():
        raise ValueError(f"{base}: no config.json there: name a run folder or a model folder hansard-hf wrote.")
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type != "hansard_gpt":
        raise ValueError(f"{base}: not a HansardGPT model folder (config.json model_type {model_type!r}): name a run "
                         "folder or a model folder hansard-hf wrote.")
    out = Path(out)
    held_out = dataset["validation"] if "validation" in dataset else dataset["train"]
    tokenizer = chat_tokenizer(load_tokenizer(base))
    model = HansardGPTForCausalLM.from_pretrained(base)
    args = HansardSFTConfig.from_settings(output_dir=str(out), **settings)
    peft = lora_config(lora)
    if peft is not None and args.nanochat_optimizer:
        raise ValueError("lora_r > 0 trains PEFT's adapter parameters, which are not nanochat's groups: set "
                         "nanochat_optimizer=false (and learning_rate) for LoRA.")
    lock = OutputDirLock(out)
    on_main_process(lock.acquire)  # one live run per folder
    try:
        resume = on_main_process(lambda: begin_run(out, base, data))
        trainer = HansardSFTTrainer(model=model, args=args, train_dataset=dataset["train"].select_columns(["messages"]),
                                    processing_class=tokenizer, peft_config=peft, callbacks=[FineTuningState()])
        try:
            bpb = {"base": on_main_process(lambda: answer_bits_per_byte(trainer.model, tokenizer, held_out))}
            if resume is not None and args.should_save:  # the main process says it
                print(f"resuming from {resume}", flush=True)
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
            tuned = trainer.model.merge_and_unload() if peft is not None else trainer.model
            bpb["finetuned"] = on_main_process(lambda: answer_bits_per_byte(tuned, tokenizer, held_out))
            refuse_non_finite(tuned, trainer.state.global_step, "the fine-tuned weights are not finite (the model is "
                              "not saved)", out)
            tuned.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(END_OF_ANSWER)
            counts_file = Path(data) / "qa_counts.json"
            counts = json.loads(counts_file.read_text()) if counts_file.exists() else {}
            if args.should_save:
                save_final(out, tuned, tokenizer, base, sft_card(out, str(base), str(data), counts, bpb),
                           trainer.state.global_step)
        except BaseException as error:  # how it ended, for hansard-hf status
            ending = ("stopped" if isinstance(error, KeyboardInterrupt | SystemExit)
                      else "diverged" if isinstance(error, TrainingDiverged) else "crashed")
            RunStateFile.record(args, trainer.state, ending, f"{type(error).__name__}: {error}", args.should_save)
            raise
    finally:
        lock.release()
    state = PartialState()
    state.wait_for_everyone()  # every process is done before the process group closes: none aborts at exit
    state.destroy_process_group()
    return bpb

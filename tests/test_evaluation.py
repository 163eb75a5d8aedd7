"""CORE-format tasks scored as nanochat does (hand-checked on a bigram model), the Hansard benchmark, sampling."""

import json
import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.evaluation.core_benchmark import Task, evaluate_tasks, load_bundle, render_prompts
from hansard_hf.evaluation import sample
from hansard_hf.evaluation.hansard_tasks import build_hansard_tasks, turns

WORDS = ["<|bos|>", "the", "a", "cat", "dog", "bird", "mewed", "barked", "flew", "sat", "away", "down", "on", "mat",
         "Answer:", "?"]
FOLLOWS = {"cat": "mewed", "dog": "barked", "a": "bird", "bird": "flew", "flew": "away", "sat": "down"}


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="?"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", pad_token="<|bos|>", unk_token="?")


@pytest.fixture(scope="module")
def bigram():
    """A HansardGPT whose blocks are the identity (nanochat's zero o_proj/fc2), so next-token logits depend only on
    the current token: 15 tanh(8 W[next, current] / 15), with W = 1 on the FOLLOWS pairs and 0 elsewhere."""
    config = HansardGPTConfig(depth=1, head_dim=16, aspect_ratio=64, vocab_size=len(WORDS), max_position_embeddings=64)
    model = HansardGPTForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, : len(WORDS)] = torch.eye(len(WORDS))
        model.lm_head.weight.zero_()
        for current, following in FOLLOWS.items():
            model.lm_head.weight[WORDS.index(following), WORDS.index(current)] = 1.0
    return model


def write_bundle(folder):
    """Three tasks in the DCLM layout. Expected by hand with the bigram model:
    animals (MC, 0-shot): items 1-2 right, item 3 has a wrong gold -> 2/3, baseline 0.5, centred 1/3;
    who (schema, 1-shot): "mewed" follows "cat" -> right -> 1.0, baseline 0.5, centred 1.0;
    flight (LM, 0-shot): "flew away" after "a bird" is greedy -> right; "sat down" is not -> 1/2, centred 0.5."""
    data = folder / "eval_data" / "toy"
    data.mkdir(parents=True)
    rows = {
        "animals.jsonl": [{"query": "the cat", "choices": ["mewed", "barked"], "gold": 0},
                          {"query": "the dog", "choices": ["mewed", "barked"], "gold": 1},
                          {"query": "the cat", "choices": ["barked", "mewed"], "gold": 0}],
        "who.jsonl": [{"context_options": ["the cat", "the dog"], "continuation": "mewed", "gold": 0},
                      {"context_options": ["the dog", "the cat"], "continuation": "barked", "gold": 0}],
        "flight.jsonl": [{"context": "a bird ", "continuation": "flew away"},
                         {"context": "a bird", "continuation": "sat down"}],
    }
    for name, items in rows.items():
        (data / name).write_text("".join(json.dumps(item) + "\n" for item in items))
    (folder / "core.yaml").write_text(
        "icl_tasks:\n"
        "- {label: animals, dataset_uri: toy/animals.jsonl, num_fewshot: [0], icl_task_type: multiple_choice}\n"
        "- {label: who, dataset_uri: toy/who.jsonl, num_fewshot: [1], icl_task_type: schema}\n"
        "- {label: flight, dataset_uri: toy/flight.jsonl, num_fewshot: [0], icl_task_type: language_modeling, "
        "continuation_delimiter: ' '}\n"
    )
    (folder / "eval_meta_data.csv").write_text("Eval Task,Random baseline\nanimals,50\nwho,50\nflight,0\n")
    return folder


def test_core_scores_match_the_hand_computation(bigram, tokenizer, tmp_path):
    tasks = load_bundle(write_bundle(tmp_path / "bundle"))
    results = evaluate_tasks(bigram, tokenizer, tasks)["tasks"]
    assert results["animals"]["accuracy"] == pytest.approx(2 / 3) and results["animals"]["centered"] == pytest.approx(1 / 3)
    assert results["who"]["accuracy"] == 1.0 and results["who"]["centered"] == 1.0
    assert results["flight"]["accuracy"] == 0.5 and results["flight"]["centered"] == 0.5
    assert evaluate_tasks(bigram, tokenizer, tasks)["mean_centered"] == pytest.approx((1 / 3 + 1.0 + 0.5) / 3)


def test_prompts_are_rendered_as_nanochat_does():
    mc = Task("t", "multiple_choice", 1, "\nAnswer: ", [], 0.25)
    shot = {"query": "Q1", "choices": ["a", "b"], "gold": 1}
    assert render_prompts(mc, {"query": "Q2", "choices": ["x", "y"], "gold": 0}, [shot]) == [
        "Q1\nAnswer: b\n\nQ2\nAnswer: x", "Q1\nAnswer: b\n\nQ2\nAnswer: y"]
    schema = Task("s", "schema", 0, " ", [], 0.5)
    assert render_prompts(schema, {"context_options": ["c1", "c2"], "continuation": "end", "gold": 0}, []) == [
        "c1 end", "c2 end"]
    lm = Task("l", "language_modeling", 1, " ", [], 0.0)
    assert render_prompts(lm, {"context": "ctx  ", "continuation": "cont"}, [{"context": " s ", "continuation": "o"}]) == [
        "s o\n\nctx", "s o\n\nctx cont"]


def test_bundle_is_shuffled_cropped_and_missing_is_explained(tmp_path):
    folder = write_bundle(tmp_path / "bundle")
    first = load_bundle(folder, max_per_task=2)
    assert [len(t.examples) for t in first] == [2, 2, 2]
    assert [t.examples for t in first] == [t.examples for t in load_bundle(folder, max_per_task=2)]
    assert first[1].num_fewshot == 1 and first[0].random_baseline == 0.5 and first[2].delimiter == " "
    with pytest.raises(FileNotFoundError, match="eval_bundle.zip"):
        load_bundle(tmp_path / "nowhere")


DEBATE = """HOUSING

Mr. Smith: Will the Minister tell the House what is being done about housing?

The Minister for Housing: We are building more homes than ever before.

Mrs. Jones: That is not what my constituents see.

Mr. Smith: Will he meet me to discuss it?

The Minister for Housing: I will."""


def test_hansard_benchmark_is_built_deterministically_from_debates():
    assert turns(DEBATE)[0] == ("Mr. Smith", "Will the Minister tell the House what is being done about housing?")
    debates = [DEBATE.replace("housing", f"housing {i}") for i in range(20)] + ["no speakers here"]
    next_speech, who = build_hansard_tasks(debates, max_per_task=15)
    assert (len(next_speech.examples), len(who.examples)) == (15, 15)
    assert build_hansard_tasks(debates, max_per_task=15)[0].examples == next_speech.examples
    for item in next_speech.examples:
        true_turns = [f"{s}: {t}" for s, t in turns(item["query"] + item["choices"][item["gold"]])]
        assert true_turns[-1] == item["choices"][item["gold"]] and len(set(item["choices"])) == len(item["choices"])
    for item in who.examples:
        speeches = {c.split(": ", 1)[1] for c in item["choices"]}
        assert len(speeches) == 1  # same speech, different speakers
    assert next_speech.random_baseline == pytest.approx(
        sum(1 / len(e["choices"]) for e in next_speech.examples) / 15)


def test_samples_are_greedy_continuations(bigram, tokenizer):
    out = sample(bigram, tokenizer, ["a bird", "the cat"], max_new_tokens=2)
    assert out["a bird"].split()[:2] == ["flew", "away"]
    assert out["the cat"].split()[0] == "mewed"


def test_trainer_runs_benchmarks_and_samples_on_schedule(bigram, tokenizer, tmp_path):
    from hansard_hf import HansardTrainer
    from trainer_helpers import tiny_arguments
    from trainer_helpers import PackedRows

    model = HansardGPTForCausalLM(bigram.config)
    model.load_state_dict(bigram.state_dict())
    args = tiny_arguments(tmp_path / "run", max_seq_len=8, total_batch_size=16, max_steps=3, core_metric_every=2,
                          sample_every=2)
    tasks = load_bundle(write_bundle(tmp_path / "bundle"))
    tasks.append(build_hansard_tasks([DEBATE] * 3)[0])
    trainer = HansardTrainer(model=model, args=args, train_dataset=PackedRows(16, 8, len(WORDS)),
                             processing_class=tokenizer, benchmark_tasks=tasks)
    trainer.train()
    bench = [e for e in trainer.state.log_history if "core_metric" in e]
    assert [e["step"] for e in bench] == [2, 3]  # every 2 steps and at the end
    assert {"bench/animals", "bench/who", "bench/flight", "hansard_metric"} <= set(bench[0])
    assert math.isfinite(bench[0]["core_metric"])
    saved = json.loads((tmp_path / "run" / "samples.json").read_text())
    assert saved["step"] == 3 and len(saved["samples"]) == 7


def test_metrics_compose_with_evaluate(bigram, tokenizer):
    import evaluate

    from hansard_hf.evaluation import evaluate_bpb, token_nats
    from hansard_hf.evaluation.metrics import BITS_PER_BYTE, CENTERED_ACCURACY

    ids = torch.tensor([[0, 1, 3, 6, 12, 1, 13], [0, 2, 5, 8, 10, 9, 11]])
    batch = {"input_ids": ids[:, :-1], "shift_labels": ids[:, 1:]}
    token_bytes = torch.tensor([0] + [len(w) for w in WORDS[1:]])
    nats = token_nats(bigram, batch["input_ids"], batch["shift_labels"]).flatten().tolist()
    metric = evaluate.load(BITS_PER_BYTE).compute(predictions=nats, references=token_bytes[ids[:, 1:]].flatten().tolist())
    assert metric["bpb"] == pytest.approx(evaluate_bpb(bigram, [batch], token_bytes)["bpb"], rel=1e-9)
    centred = evaluate.load(CENTERED_ACCURACY).compute(predictions=[0, 1, 1], references=[0, 1, 0], random_baseline=0.5)
    assert centred == {"accuracy": pytest.approx(2 / 3), "centered_accuracy": pytest.approx(1 / 3)}


def test_lm_evaluation_harness_loads_our_checkpoint(bigram, tokenizer, tmp_path):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    bigram.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    items = [{"query": "the cat", "choices": [" mewed", " barked"], "gold": 0},
             {"query": "the dog", "choices": [" mewed", " barked"], "gold": 1},
             {"query": "the cat", "choices": [" barked", " mewed"], "gold": 0}]  # a wrong gold: 2/3 by hand
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "toy.yaml").write_text(
        f"task: hansard_toy\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tmp_path / 'items.jsonl'}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{query}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{gold}}'\nmetric_list:\n  - metric: acc\n")
    results = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={tmp_path / 'model'},trust_remote_code=True",
                                      tasks=["hansard_toy"], task_manager=TaskManager(include_path=str(tmp_path / "tasks")),
                                      device="cpu", batch_size=2)
    assert results["results"]["hansard_toy"]["acc,none"] == pytest.approx(2 / 3)


def test_other_causal_lms_evaluate_too(tokenizer, tmp_path):
    """GPT-2 (no softcap, learned positions) and transformers' native NanoChat go through the same code."""
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel, NanoChatForCausalLM

    from hansard_hf.evaluation import evaluate_bpb
    from hansard_hf.hub import to_nanochat_config

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=32, n_layer=2, n_head=2)).eval()
    nanochat = NanoChatForCausalLM(to_nanochat_config(HansardGPTConfig(depth=1, head_dim=16, vocab_size=len(WORDS)))).eval()
    ids = torch.randint(1, len(WORDS), (3, 12))
    batch = {"input_ids": ids[:, :-1], "shift_labels": ids[:, 1:]}
    token_bytes = torch.ones(len(WORDS), dtype=torch.long)
    tasks = load_bundle(write_bundle(tmp_path / "bundle"))
    for model in (gpt2, nanochat):
        with torch.no_grad():
            logits = model(batch["input_ids"]).logits
        naive = F.cross_entropy(logits.reshape(-1, len(WORDS)), batch["shift_labels"].reshape(-1)).item()
        assert evaluate_bpb(model, [batch], token_bytes)["loss"] == pytest.approx(naive, rel=1e-5)
        assert set(evaluate_tasks(model, tokenizer, tasks)["tasks"]) == {"animals", "who", "flight"}


def test_prompts_are_cropped_only_for_a_hard_position_limit(bigram, tokenizer):
    """nanochat crops prompts only for models with a hard limit (GPT-2's learned positions): a rotary model scores
    the whole prompt, beyond max_position_embeddings; a GPT-2 cannot, counts it wrong, and the crop is reported."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from hansard_hf.evaluation.core_benchmark import position_limit

    task = Task("long", "multiple_choice", 0, " ", [
        {"query": "the cat", "choices": [" ".join(["mewed"] * 80), " ".join(["barked"] * 80)], "gold": 0}], 0.5)
    assert position_limit(bigram) is None and bigram.config.max_position_embeddings == 64
    whole = evaluate_tasks(bigram, tokenizer, [task])["tasks"]["long"]
    assert whole["accuracy"] == 1.0 and whole["cropped"] == 0  # "cat" -> "mewed": the gold choice, scored in full
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(WORDS), n_positions=64, n_embd=32, n_layer=1, n_head=2)).eval()
    assert position_limit(gpt2) == 64
    cropped = evaluate_tasks(gpt2, tokenizer, [task])["tasks"]["long"]
    assert cropped["accuracy"] == 0.0 and cropped["cropped"] == 1  # 80 continuation tokens > 64 positions

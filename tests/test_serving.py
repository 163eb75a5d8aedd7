"""hansard-hf serve: our folders behind transformers serve (as native NanoChat, no code from the folder), the answers
those of plain `generate`, streamed; one clear error per bad request while the server goes on; the page in Chromium."""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch

from conftest import cli, offline_env, randomized
from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.finetuning import chat_tokenizer
from hansard_hf.serving import MAX_MESSAGE_CHARS, free_port, prepare_folder
from hansard_hf.tokenization import load_tokenizer, save_tokenizer, train_tokenizer

QUESTION = "To ask the Secretary of State for Health how many nurses there were in 1997."
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def save_model(folder: Path, tokenizer, seed: int = 0, **config) -> Path:
    torch.manual_seed(seed)
    model = randomized(HansardGPTForCausalLM(HansardGPTConfig(
        depth=2, aspect_ratio=32, head_dim=32, vocab_size=len(tokenizer), max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id, **config)), seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A chat model (the tokenizer with nanochat's chat template, as hansard-hf sft writes) and a base model."""
    root = tmp_path_factory.mktemp("serve")
    text = [f"{QUESTION} There were {n} nurses, according to the figures of the Department." for n in range(300)]
    save_tokenizer(train_tokenizer(text, vocab_size=400), root / "tokenizer")
    base = save_model(root / "base", load_tokenizer(root / "tokenizer"))
    chat = save_model(root / "chat", chat_tokenizer(load_tokenizer(root / "tokenizer")), seed=1)
    return {"base": base, "chat": chat}


def processes_in(folder: Path) -> list[str]:
    """The processes working in `folder` or below it (Linux' /proc)."""
    found = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if cwd.readlink().is_relative_to(folder):
                found.append(cwd.parent.name)
        except OSError:  # gone, or not ours to read
            pass
    return found


@contextmanager
def served(folder, tmp: Path, stop=signal.SIGTERM):
    """`hansard-hf serve FOLDER` as a user starts it, on a free port, until the page answers; then stopped with
    `stop`: after SIGTERM or Ctrl+C it exits 0, with the model's server stopped and its temporary folder gone."""
    port, log, scratch = free_port(), tmp / "serve.log", tmp / "tmp"
    scratch.mkdir()
    with open(log, "w") as output:
        server = subprocess.Popen([sys.executable, "-m", "hansard_hf.cli", "serve", str(folder), "--port", str(port),
                                   "--device", "cpu"], stdin=subprocess.DEVNULL, stdout=output,
                                  stderr=subprocess.STDOUT, env=offline_env(TMPDIR=scratch))
    url = f"http://localhost:{port}"
    try:
        for _ in range(240):
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"hansard-hf serve did not answer in 2 minutes:\n{log.read_text()}")
        assert processes_in(scratch)  # the model's server, in the exported folder
        yield url
    finally:
        server.send_signal(stop)
        code = server.wait(60)
    for _ in range(60):  # the model's server stops with it, even after SIGKILL
        if not processes_in(scratch):
            break
        time.sleep(0.5)
    assert not processes_in(scratch), log.read_text()
    if stop != signal.SIGKILL:
        assert code == 0 and log.read_text().rstrip().endswith("stopped"), log.read_text()
        assert not list(scratch.iterdir())


@pytest.fixture(scope="module")
def chat_url(folders, tmp_path_factory):
    with served(folders["chat"], tmp_path_factory.mktemp("chat-server")) as url:
        yield url


def greedy_answer(folder: Path, prompt_ids: list[int], max_new_tokens: int) -> str:
    """What transformers' plain `generate` answers, greedily, with our model class."""
    tokenizer = load_tokenizer(folder)
    model = HansardGPTForCausalLM.from_pretrained(folder).eval()
    stops = [tokenizer.bos_token_id, *([tokenizer.convert_tokens_to_ids("<|assistant_end|>")]
                                       if tokenizer.chat_template else [])]
    out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
    # the stream holds back an unfinished UTF-8 sequence at the end (as nanochat's chat_web does)
    return tokenizer.decode(out[0, len(prompt_ids):], skip_special_tokens=True).rstrip("\ufffd")


def question_ids(folder: Path) -> list[int]:
    """QUESTION as a chat's prompt, through the chat template."""
    return chat_tokenizer(load_tokenizer(folder)).apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_dict=True)["input_ids"]


def streamed(url: str, path: str, body: dict) -> tuple[list[str], str]:
    """The pieces of a streamed answer, and its finish reason."""
    pieces, finish = [], None
    with httpx.stream("POST", f"{url}/v1/{path}", json={**body, "stream": True}, timeout=120) as answer:
        assert answer.status_code == 200, answer.read()
        for line in answer.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choice = json.loads(line[6:])["choices"][0]
                pieces.append(choice["delta"].get("content") or "" if "delta" in choice else choice.get("text") or "")
                finish = choice.get("finish_reason") or finish
    return pieces, finish


def test_our_folder_is_served_as_native_nanochat_with_the_same_logits_and_nanochats_sampling(folders, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, NanoChatForCausalLM

    folder = prepare_folder(folders["chat"], tmp_path / "chat")
    assert not list(folder.glob("*.py"))  # no code travels: transformers' own class loads it
    native = AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(native, NanoChatForCausalLM)
    ours = HansardGPTForCausalLM.from_pretrained(folders["chat"])
    ids = torch.randint(0, 400, (2, 20), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(native(ids).logits, ours(ids).logits, rtol=0, atol=1e-5)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    bos, end = tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids("<|assistant_end|>")
    assert tokenizer("Order.").input_ids[0] == bos  # plain text starts with <|bos|>, as in training ...
    chat_ids = tokenizer.apply_chat_template([{"role": "user", "content": "Order."}], add_generation_prompt=True,
                                             return_dict=True)["input_ids"]
    assert chat_ids[0] == bos and chat_ids[1] != bos  # ... and a chat once only
    generation = native.generation_config  # nanochat 10231df chat_web's sampling; an answer ends at either token
    assert (generation.do_sample, generation.temperature, generation.top_k) == (True, 0.8, 50)
    assert generation.eos_token_id == [end, bos]
    prepare_folder(folders["base"], tmp_path / "base")
    assert AutoTokenizer.from_pretrained(tmp_path / "base").chat_template is None
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "base").generation_config.eos_token_id == [bos]


def test_a_chat_streams_the_answer_plain_generate_gives(folders, chat_url):
    prompt = question_ids(folders["chat"])
    pieces, finish = streamed(chat_url, "chat/completions", {
        "messages": [{"role": "user", "content": QUESTION}], "temperature": 0, "max_tokens": 24})
    assert len([piece for piece in pieces if piece]) > 1  # streamed, not one block
    assert "".join(pieces) == greedy_answer(folders["chat"], prompt, 24)
    assert finish in ("length", "stop")
    from openai import OpenAI  # the OpenAI client, as docs/serving.md shows it

    chunks = OpenAI(base_url=f"{chat_url}/v1", api_key="none").chat.completions.create(
        model="chat", stream=True, temperature=0, max_tokens=24, messages=[{"role": "user", "content": QUESTION}])
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "".join(pieces)
    long = {"messages": [{"role": "user", "content": f"{QUESTION} " * 12}], "max_tokens": 200}  # 232 of 256 tokens
    usage = httpx.post(f"{chat_url}/v1/chat/completions", json=long, timeout=120).json()["usage"]
    assert usage["prompt_tokens"] == 232 and usage["completion_tokens"] <= 24  # it stops at the model's context
    listed = httpx.get(f"{chat_url}/v1/models").json()["data"]
    assert [model["id"] for model in listed] == ["chat"]  # the folder's name, not a temporary path


def test_a_base_model_continues_the_opening_of_a_debate_as_generate_does(folders, tmp_path):
    opening = "Mr Speaker, the nurses"
    with served(folders["base"], tmp_path, stop=signal.SIGINT) as url:
        assert httpx.get(f"{url}/info").json()["chat"] is False
        chat = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]})
        assert chat.status_code == 400 and "base model" in chat.json()["error"]["message"]
        pieces, _ = streamed(url, "completions", {"prompt": opening, "temperature": 0, "max_tokens": 16})
    tokenizer = load_tokenizer(folders["base"])
    expected = greedy_answer(folders["base"], [tokenizer.bos_token_id, *tokenizer(opening).input_ids], 16)
    assert "".join(pieces) == expected


BAD_REQUESTS = {  # what the request gets wrong -> (path, body bytes, words of the error)
    "an empty question": ("chat/completions", {"messages": [{"role": "user", "content": "  "}]}, "question is empty"),
    "no messages": ("chat/completions", {"messages": []}, "at least one"),
    "a message over the limit": ("chat/completions", {"messages": [{"role": "user", "content": "Order! " * 2000}]},
                                 f"longer than {MAX_MESSAGE_CHARS:,} characters"),
    "a prompt over the model's context": ("chat/completions",
                                          {"messages": [{"role": "user", "content": "Order! " * 300}]},
                                          "reads at most 256"),
    "an empty prompt": ("completions", {"prompt": ""}, "prompt is empty"),
    "a list of prompts": ("completions", {"prompt": ["Order.", "Order!"]}, "prompt must be one string"),
    "a non-UTF-8 body": ("chat/completions", b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', "not UTF-8"),
    "a body that is not JSON": ("chat/completions", b"order, order", "not JSON"),
    "another model": ("chat/completions", {"model": "gpt-4", "messages": [{"role": "user", "content": "Hi"}]},
                      "serves 'chat', not 'gpt-4'"),
    "a temperature out of range": ("chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                        "temperature": 9}, "temperature must be"),
    "no tokens to answer with": ("chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                      "max_tokens": 0}, "max_tokens must be"),
    "too many tokens, by OpenAI's newer name": ("chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                                                     "max_completion_tokens": 100_000},
                                                "max_tokens must be"),
    "an endpoint not served": ("responses", {"input": "Hi"}, "is not served here"),
}


def test_each_bad_request_gets_one_clear_error_and_the_server_goes_on(chat_url):
    answered = 0
    for what, (path, body, words) in BAD_REQUESTS.items():
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = httpx.post(f"{chat_url}/v1/{path}", content=content, headers={"content-type": "application/json"},
                            timeout=60)
        assert answer.status_code == 400, (what, answer.text)
        problem = answer.json()
        assert words in (problem.get("error", {}).get("message") or problem.get("detail")), (what, problem)
        good = httpx.post(f"{chat_url}/v1/chat/completions", timeout=60,
                          json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
        answered += good.status_code == 200 and bool(good.json()["choices"][0]["message"]["content"] is not None)
    assert answered == len(BAD_REQUESTS)
    assert httpx.get(f"{chat_url}/health").json() == {"status": "ok"}


def test_sixteen_requests_at_once_are_all_answered_in_full(chat_url):
    results = {}

    def ask(index: int) -> None:
        pieces, finish = streamed(chat_url, "chat/completions", {
            "messages": [{"role": "user", "content": f"{QUESTION} ({index})"}], "max_tokens": 12,
            "temperature": 0})
        results[index] = (len(pieces), finish)

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert sorted(results) == list(range(16))
    assert all(finish in ("length", "stop") for _, finish in results.values())


def test_a_killed_server_takes_the_models_server_with_it(folders, tmp_path):
    with served(folders["base"], tmp_path, stop=signal.SIGKILL) as url:
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}


def test_a_folder_with_code_of_its_own_runs_nothing_without_the_flag(tmp_path):
    folder, marker = tmp_path / "stranger", tmp_path / "ran"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "stranger", "architectures": ["StrangerLM"],
                                                    "auto_map": {"AutoModelForCausalLM": "modeling.StrangerLM"}}))
    (folder / "modeling.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    result = cli("serve", str(folder), "--port", str(free_port()))
    assert result.returncode == 1
    assert "brings its own code" in result.stderr and "--trust-remote-code" in result.stderr
    assert not marker.exists()
    assert "no config.json" in cli("serve", str(tmp_path / "nowhere")).stderr


def test_a_model_with_nanochat_2026_parts_is_refused_with_the_reason(folders, tmp_path):
    save_model(tmp_path / "m2026", load_tokenizer(folders["base"]), value_embeddings=True)
    result = cli("serve", str(tmp_path / "m2026"), "--port", str(free_port()))
    assert result.returncode == 1 and "value_embeddings" in result.stderr and "cannot serve" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, before any weight is read


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: apt-get install chromium (docs/serving.md)")
def test_the_page_in_chromium_streams_the_answer_generate_gives(folders, chat_url, tmp_path):
    from playwright.sync_api import sync_playwright

    prompt = question_ids(folders["chat"])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(chat_url)
        page.wait_for_selector("#send:not([disabled])")
        assert "chat" in page.text_content("#model")
        page.fill("#question", QUESTION)
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "24")
        page.click("#send")
        page.wait_for_selector("#answer[data-state=streaming]")
        page.wait_for_selector("#answer[data-state=done]", timeout=120_000)
        assert page.text_content("#answer") == greedy_answer(folders["chat"], prompt, 24)
        page.fill("#question", " ")
        page.click("#send")
        page.wait_for_selector("#answer[data-state=failed]")
        assert "question is empty" in page.text_content("#error")
        page.screenshot(path=str(tmp_path / "page.png"))
        browser.close()
    assert (tmp_path / "page.png").stat().st_size > 0

"""hansard-hf serve against transformers' plain `generate` on the same model: first-token latency and tokens per
second, for the tiny and the d16 recipe's shapes (untrained weights, the Hansard tokenizer at each recipe's vocabulary).

    python bench/serve.py [--data ../shared/data/hansard/hansard_debates.jsonl] [--shapes tiny d16] [--tokens 64]

Each request is greedy (temperature 0) with the same prompt, so both make the same tokens (tests/test_serving.py checks
that they are the same text). `generate`: one call in this process, timed to its first new token through a streamer.
serve: a streamed chat completion through `hansard-hf serve` (the page's port: our checks, then transformers serve
running the model exported to native NanoChat), timed to its first content chunk. Both make exactly --tokens tokens
(min_new_tokens). Best of --repeats after a warm-up.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from transformers.generation.streamers import BaseStreamer

from hansard_hf import HansardGPTForCausalLM
from hansard_hf.finetuning import chat_tokenizer
from hansard_hf.recipe import Recipe
from hansard_hf.serving import free_port
from hansard_hf.tokenization import train_tokenizer

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "hansard" / "hansard_debates.jsonl"
QUESTION = "To ask the Secretary of State for Health how many nurses were employed in the NHS in 1997."


class FirstToken(BaseStreamer):
    """Notes when `generate` hands over its first new token (the prompt comes first)."""

    def __init__(self):
        self.calls, self.first = 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:
            self.first = time.perf_counter()

    def end(self):
        pass


def plain_generate(model, prompt: list[int], tokens: int) -> tuple[float, float, int]:
    streamer, start = FirstToken(), time.perf_counter()
    out = model.generate(torch.tensor([prompt]), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                         streamer=streamer, pad_token_id=0)
    end, made = time.perf_counter(), out.shape[1] - len(prompt)
    return streamer.first - start, (made - 1) / (end - streamer.first), made


def served(url: str, tokens: int) -> tuple[float, float, int]:
    body = {"messages": [{"role": "user", "content": QUESTION}], "temperature": 0, "max_tokens": tokens,
            "stream": True, "generation_config": json.dumps({"min_new_tokens": tokens})}
    start, first, chunks = time.perf_counter(), None, 0
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0].get("delta", {}).get("content"):
                first, chunks = first or time.perf_counter(), chunks + 1
    end = time.perf_counter()
    return first - start, (tokens - 1) / (end - first), chunks


def start_server(folder: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "hansard_hf.cli", "serve", str(folder), "--port", str(port),
                               "--device", "cpu"], stdin=subprocess.DEVNULL, stdout=open(log, "w"),
                              stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    for _ in range(600):
        if server.poll() is not None:
            raise SystemExit(log.read_text())
        try:
            if httpx.get(f"{url}/info", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit(f"no answer from hansard-hf serve: {log}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT))
    parser.add_argument("--shapes", nargs="+", default=["tiny", "d16"])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = [json.loads(line)["text"] for line in open(args.data)]
    print(f"torch threads {torch.get_num_threads()}; {args.tokens} new tokens, greedy; best of {args.repeats}")
    print(f"{'shape':>6} {'params':>8} {'generate TTFT s':>16} {'serve TTFT s':>13} {'ratio':>6} "
          f"{'generate tok/s':>15} {'serve tok/s':>12} {'ratio':>6}")
    for shape in args.shapes:
        recipe = Recipe.load(shape)
        vocab = recipe.values.get("tokenizer_vocab_size", recipe.values.get("vocab_size", 65536))
        tokenizer = chat_tokenizer(train_tokenizer(iter(texts), vocab_size=vocab))
        torch.manual_seed(0)
        model = HansardGPTForCausalLM(recipe.model_config(len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                                          pad_token_id=tokenizer.pad_token_id)).eval()
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                               return_dict=True)["input_ids"]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / shape
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)  # with its chat template: a chat model, as hansard-hf sft writes
            server, url = start_server(folder, Path(tmp) / "serve.log")
            try:
                with torch.no_grad():
                    plain_generate(model, prompt, args.tokens)  # warm-up
                    ours = [plain_generate(model, prompt, args.tokens) for _ in range(args.repeats)]
                served(url, args.tokens)
                theirs = [served(url, args.tokens) for _ in range(args.repeats)]
            finally:
                server.terminate()
                server.wait(60)
        g_ttft, s_ttft = min(r[0] for r in ours), min(r[0] for r in theirs)
        g_rate, s_rate = max(r[1] for r in ours), max(r[1] for r in theirs)
        params = sum(p.numel() for p in model.parameters())
        print(f"{shape:>6} {params / 1e6:>7.1f}M {g_ttft:>16.3f} {s_ttft:>13.3f} {s_ttft / g_ttft:>6.2f} "
              f"{g_rate:>15.1f} {s_rate:>12.1f} {s_rate / g_rate:>6.2f}", flush=True)


if __name__ == "__main__":
    main()

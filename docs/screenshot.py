"""Makes docs/serve.png, the README's picture of `hansard-hf serve`: a 2-layer model fine-tuned for a minute on
generated written questions (so its answers read as sentences), served, and asked in headless Chromium.

    python docs/screenshot.py    # needs Chromium (apt-get install chromium) and playwright (pip install -e ".[dev]")
"""

import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from datasets import Dataset, DatasetDict
from playwright.sync_api import sync_playwright

from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM
from hansard_hf.finetuning import run_sft
from hansard_hf.serving import free_port
from hansard_hf.tokenization import save_tokenizer, train_tokenizer

OFFICES = ["Home Department", "Treasury", "Health and Social Care", "Education", "Defence", "Transport"]
THINGS = ["police officers", "nurses", "teachers", "soldiers", "buses", "prisons"]
QUESTION = "To ask the Secretary of State for Health and Social Care how many nurses there were in 1997."


def chats(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        office, thing, year = rng.choice(OFFICES), rng.choice(THINGS), rng.randint(1990, 2024)
        rows.append({"messages": [
            {"role": "user", "content": f"To ask the Secretary of State for {office} how many {thing} there were in "
                                        f"{year}."},
            {"role": "assistant", "content": f"There were {rng.randint(100, 9999):,} {thing} in {year}, according "
                                             f"to the figures of the Department."}]})
    return rows


def main():
    out = Path(__file__).with_name("serve.png")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        DatasetDict({"train": Dataset.from_list(chats(2048, 0)), "validation": Dataset.from_list(chats(32, 1))}) \
            .save_to_disk(str(tmp / "qa"))
        texts = [m["content"] for row in chats(2048, 0) for m in row["messages"]]
        tokenizer = train_tokenizer(texts, vocab_size=512)
        save_tokenizer(tokenizer, tmp / "base")
        torch.manual_seed(0)
        HansardGPTForCausalLM(HansardGPTConfig(
            depth=2, aspect_ratio=64, head_dim=64, vocab_size=len(tokenizer), max_position_embeddings=256,
            bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)).save_pretrained(tmp / "base")
        run_sft(tmp / "base", tmp / "qa", tmp / "hansard-qa-demo", "sft",
                {"max_steps": 300, "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1,
                 "matrix_lr": 0.02, "embedding_lr": 0.2, "unembedding_lr": 0.004, "use_cpu": True,
                 "disable_tqdm": True, "report_to": "none", "max_length": 128})
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "hansard_hf.cli", "serve", str(tmp / "hansard-qa-demo"),
                                   "--port", str(port), "--device", "cpu"], stdin=subprocess.DEVNULL)
        try:
            url = f"http://localhost:{port}"
            while True:
                try:
                    if httpx.get(f"{url}/info", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=shutil.which("chromium") or shutil.which("chromium-browser"), args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 900, "height": 400})
                page.goto(url)
                page.wait_for_selector("#send:not([disabled])")
                page.fill("#question", QUESTION)
                page.fill("#temperature", "0.5")
                page.fill("#max-tokens", "64")
                page.click("#send")
                page.wait_for_selector("#answer[data-state=done]", timeout=120_000)
                print("answer:", page.text_content("#answer"))
                page.screenshot(path=str(out))
                browser.close()
        finally:
            server.terminate()
            server.wait(60)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""`hansard-hf import-nanochat` against nanochat's own forward: logits of the imported HansardGPT vs nanochat's GPT
on the same tokens, for checkpoints written by nanochat's own code (its current 92d63d4 and its Oct-2025 10231df).

    git --git-dir=<nanochat mirror> archive 92d63d4 | tar -x -C .nanochat
    git --git-dir=<nanochat mirror> archive 10231df | tar -x -C .nanochat-10231df
    python bench/import_nanochat.py --nanochat .nanochat --nanochat-2025 .nanochat-10231df

Each nanochat model is built by its own code at a small size, initialised by its own `init_weights`, then every
weight is perturbed (so zero-initialised projections, gates and lambdas all matter), saved the way nanochat's
checkpoint manager saves (`model_<step>.pt`, `meta_<step>.json`), imported by the command line, and compared in fp32.
10231df keeps its RoPE cos/sin tables in bf16 even on the CPU; the last column rounds ours the same way, so what is
left is the mapping's own error.
"""

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from hansard_hf.modeling_hansard_gpt import HansardGPTForCausalLM

SHAPES = [  # (label, GPTConfig fields); the 2026 ones add window_pattern
    ("MHA", dict(sequence_len=256, vocab_size=1000, n_layer=5, n_head=4, n_kv_head=4, n_embd=256)),
    ("GQA", dict(sequence_len=512, vocab_size=777, n_layer=4, n_head=4, n_kv_head=2, n_embd=256)),
]


@contextlib.contextmanager
def nanochat_code(folder: str):
    """Import `nanochat` from `folder`, and forget it afterwards (the two versions share the package name)."""
    sys.path.insert(0, str(Path(folder).resolve()))
    try:
        yield
    finally:
        sys.path.pop(0)
        for name in [m for m in sys.modules if m == "nanochat" or m.startswith("nanochat.")]:
            del sys.modules[name]


def compare(folder: str, label: str, fields: dict, window_pattern: str | None, out: Path) -> float:
    with nanochat_code(folder):
        from nanochat.gpt import GPT, GPTConfig

        torch.manual_seed(0)
        config = GPTConfig(**fields, **({"window_pattern": window_pattern} if window_pattern else {}))
        model = GPT(config)
        model.init_weights()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
            model.lm_head.weight.mul_(20)  # logits of a few units, not the 0.001-init near-zeros
        folder_out = out / label
        folder_out.mkdir(parents=True)
        torch.save(model.state_dict(), folder_out / "model_000100.pt")
        (folder_out / "meta_000100.json").write_text(json.dumps({"step": 100, "model_config": config.__dict__}))
        ids = torch.randint(0, fields["vocab_size"], (2, fields["sequence_len"]))
        with torch.no_grad():
            theirs = model(ids).float()
    subprocess.run([sys.executable, "-m", "hansard_hf.cli", "import-nanochat", str(folder_out), str(out / f"{label}-hf")],
                   check=True, stdout=subprocess.DEVNULL)
    ours = HansardGPTForCausalLM.from_pretrained(out / f"{label}-hf").eval()
    with torch.no_grad():
        mine = ours(ids).logits
        with bf16_rope_tables(ours) if window_pattern is None else contextlib.nullcontext():
            mine_rounded = ours(ids).logits
    return [(m - theirs).abs().max().item() for m in (mine, mine_rounded)] + [theirs.abs().max().item()]


@contextlib.contextmanager
def bf16_rope_tables(model):
    """Round our cos/sin through bf16, as nanochat 10231df stores its RoPE tables (asserted bf16, even on CPU)."""
    rotary = model.model.rotary_emb
    exact = rotary.forward
    rotary.forward = lambda x, position_ids: tuple(t.bfloat16().float() for t in exact(x, position_ids))
    try:
        yield
    finally:
        del rotary.forward


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanochat", required=True, help="nanochat 92d63d4 source folder")
    parser.add_argument("--nanochat-2025", help="nanochat 10231df source folder (the Oct-Dec 2025 layout)")
    args = parser.parse_args()
    runs = [("92d63d4", args.nanochat, "SSSL"), ("92d63d4", args.nanochat, "SL")]
    if args.nanochat_2025:
        runs.append(("10231df", args.nanochat_2025, None))
    print("| nanochat | windows | shape | largest logit difference | same, our RoPE tables in bf16 like theirs | "
          "largest logit |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (version, folder, pattern) in enumerate(runs):
            for label, fields in SHAPES:
                exact, rounded, scale = compare(folder, label, fields, pattern, Path(tmp) / str(i))
                rounded = f"{rounded:.2e}" if pattern is None else "(theirs are fp32 on CPU)"
                print(f"| {version} | {pattern or 'none (2025)'} | {label} {fields} | {exact:.2e} | {rounded} | "
                      f"{scale:.2f} |")


if __name__ == "__main__":
    main()

"""`hansard-hf import-nanochat` against nanochat's own forward: logits of the imported HansardGPT vs nanochat's GPT
on the same tokens, for checkpoints written by nanochat's own code (its current 92d63d4 and its Oct-2025 10231df).

    git --git-dir=<nanochat mirror> archive 92d63d4 | tar -x -C .nanochat
    git --git-dir=<nanochat mirror> archive 10231df | tar -x -C .nanochat-10231df
    python bench/import_nanochat.py --nanochat .nanochat --nanochat-2025 .nanochat-10231df

Each nanochat model is built by its own code at a small size, initialised by its own `init_weights`, then every
weight is perturbed (so zero-initialised projections, gates and lambdas all matter), saved the way nanochat's
checkpoint manager saves (`model_<step>.pt`, `meta_<step>.json`), imported by the command line, and compared in fp32.
10231df keeps its RoPE cos/sin tables in bf16 even on the CPU; the last column rounds ours the same way, so what is
left is the mapping's own error. For 92d63d4 it also checks that our `param_groups(..., adamw_groups="nanochat-2026")`
puts every parameter in the same kind of group (Muon or AdamW) with the same LR, betas and weight decay as nanochat's
own `setup_optimizer` at base_train's defaults.
"""

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from hansard_hf.modeling_hansard_gpt import HansardGPTForCausalLM
from hansard_hf.nanochat_checkpoint import RENAMES
from hansard_hf.optimization import param_groups

# base_train 92d63d4's defaults, as it passes them to GPT.setup_optimizer (batch LR scale 1)
BASE_TRAIN_2026 = dict(unembedding_lr=0.008, embedding_lr=0.3, matrix_lr=0.02, scalar_lr=0.5, weight_decay=0.28)

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
        their_groups = optimizer_settings(model, model.setup_optimizer(**BASE_TRAIN_2026)) if window_pattern else None
    subprocess.run([sys.executable, "-m", "hansard_hf.cli", "import-nanochat", str(folder_out), str(out / f"{label}-hf")],
                   check=True, stdout=subprocess.DEVNULL)
    ours = HansardGPTForCausalLM.from_pretrained(out / f"{label}-hf").eval()
    if their_groups is not None:
        compare_optimizer_groups(their_groups, ours)
    with torch.no_grad():
        mine = ours(ids).logits
        with bf16_rope_tables(ours) if window_pattern is None else contextlib.nullcontext():
            mine_rounded = ours(ids).logits
    return [(m - theirs).abs().max().item() for m in (mine, mine_rounded)] + [theirs.abs().max().item()]


def our_name(name: str) -> str:
    """Our name of nanochat's parameter `name` (the import's mapping)."""
    return next(re.sub(pattern, replacement, name) for pattern, replacement in RENAMES if re.fullmatch(pattern, name))


def optimizer_settings(model, optimizer) -> dict:
    """nanochat's optimizer settings per parameter, under our names: (Muon?, lr, betas, weight decay)."""
    names = {id(p): our_name(n) for n, p in model.named_parameters()}
    return {names[id(p)]: (g["kind"] == "muon", g["lr"], g.get("betas"), g["weight_decay"])
            for g in optimizer.param_groups for p in g["params"]}


def compare_optimizer_groups(theirs: dict, ours_model) -> None:
    """Every parameter in the same kind of group at the same lr, betas and weight decay (Muon's decay comes from
    base_train's schedule: not compared)."""
    lrs = {k: v for k, v in BASE_TRAIN_2026.items() if k != "weight_decay"}
    mine = {}
    for g in param_groups(ours_model, **lrs, adamw_groups="nanochat-2026"):
        for p in g["params"]:
            mine[p] = g
    names = dict(ours_model.named_parameters())
    assert set(theirs) == set(names), set(theirs) ^ set(names)
    for name, (muon, lr, betas, decay) in theirs.items():
        g = mine[names[name]]
        ours = (g["use_muon"], g["lr"], None if muon else tuple(g.get("betas", (0.8, 0.95))),
                None if muon else g.get("weight_decay", 0.0))
        expected = (muon, lr, None if muon else tuple(betas), None if muon else decay)
        assert all(abs(a - b) < 1e-12 if isinstance(a, float) else a == b for a, b in zip(ours, expected)), \
            (name, ours, expected)
    print(f"optimizer groups: {len(theirs)} parameters, the same kind, lr, betas and weight decay as "
          "nanochat's setup_optimizer", file=sys.stderr)


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

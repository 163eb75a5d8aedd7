"""nanochat's 2026 recipe vs the Oct-2025 one on Hansard, at equal training FLOPs, and each 2026 part switched on
alone: validation bits per byte of `hansard-hf train` runs of the tiny recipes (CPU, a few minutes each).

    HANSARD_HF_HOME=/tmp/measure/home python bench/recipe_2026.py \\
        --dataset ../shared/data/hansard/hansard_debates.jsonl --seeds 0 1 [--variants baseline recipe-2026 ...]

Every run trains the same tokens per step; its steps are set so that steps x FLOPs per token (nanochat's estimate,
sliding windows counted) equal the Oct-2025 tiny recipe's. One JSON line per run goes to --results (appended, so an
interrupted sweep keeps what it finished); the table at the end is built from that file.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from hansard_hf.recipe import Recipe

TINY_2026 = Recipe.load("tiny-2026").settings  # the nanochat-2026 preset as the tiny recipe fits it to 150 steps


def flags(*keys: str) -> list[str]:
    """`--key=value` overrides giving the tiny-2026 recipe's value of each key."""
    return [f"--{key}={json.dumps(TINY_2026[key])}" for key in keys]


OPTIMIZER_2026 = flags("muon_orthogonalizer", "muon_plus", "normuon_beta2")
SCHEDULES_2026 = flags("matrix_weight_decay", "cautious_weight_decay", "weight_decay_shape", "adamw_groups",
                       "embedding_lr", "unembedding_lr", "momentum_warmup_steps", "momentum_end", "momentum_final",
                       "warmup_steps", "warmdown_ratio", "final_lr_frac")
# name -> (recipe, overrides)
VARIANTS = {
    "baseline": ("tiny", []),
    "recipe-2026": ("tiny-2026", []),
    "sliding-windows": ("tiny", ["--layer_types=SSSL"]),
    "value-embeddings": ("tiny", ["--value_embeddings=true"]),
    "residual-lambdas": ("tiny", ["--residual_lambdas=true"]),
    "smear": ("tiny", ["--smear=true"]),
    "backout": ("tiny", ["--backout=true"]),
    "qk-gain-rope": ("tiny", ["--qk_gain=1.2", "--rope_theta=100000"]),
    "init-2026": ("tiny", ["--initialization=nanochat-2026"]),
    "muon-2026": ("tiny", OPTIMIZER_2026),
    "schedules-2026": ("tiny", SCHEDULES_2026),
    "architecture-2026": ("tiny", ["--architecture=nanochat-2026"]),
}


def equal_flops_steps(recipe: str, overrides: list[str], reference: Recipe) -> int:
    """Steps giving the reference recipe's training FLOPs at this variant's FLOPs per token."""
    seq = reference.settings["max_seq_len"]
    budget = reference.model_config().flops_per_token(seq) * reference.settings["max_steps"]
    variant = Recipe.load(recipe, overrides).model_config().flops_per_token(seq)
    return round(budget / variant)


def final_bpb(run_dir: Path) -> list[float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["eval_bpb"] for entry in history if "eval_bpb" in entry]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--runs", default="/tmp/measure/runs")
    parser.add_argument("--results", default="bench/recipe_2026.jsonl")
    args = parser.parse_args()
    reference = Recipe.load("tiny")
    results = Path(args.results)
    done = {(r["variant"], r["seed"]) for r in map(json.loads, results.read_text().splitlines())} \
        if results.exists() else set()
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for seed in args.seeds:
        for name in args.variants:
            if (name, seed) in done:
                continue
            recipe, overrides = VARIANTS[name]
            steps = equal_flops_steps(recipe, overrides, reference)
            out = Path(args.runs) / f"{name}-{seed}"
            command = [sys.executable, "-m", "hansard_hf.cli", "train", recipe, f"--dataset={args.dataset}",
                       "--split-field=split", "--run=dummy", "--save_every=0", "--sample_every=0",
                       "--core_metric_every=0", f"--seed={seed}", f"--max_steps={steps}",
                       f"--eval_every={steps // 3}", f"--output_dir={out}", *overrides]
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            bpb = final_bpb(out)
            row = dict(variant=name, seed=seed, steps=steps, bpb=bpb, overrides=overrides, recipe=recipe)
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{name:18s} seed {seed}: {steps} steps, bpb {' / '.join(f'{b:.4f}' for b in bpb)}", flush=True)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    base = {r["seed"]: r["bpb"][-1] for r in rows if r["variant"] == "baseline"}
    print("\n| variant | steps | seeds | final bpb per seed | mean | vs baseline, same seed (mean) |\n"
          "|---|---|---|---|---|---|")
    for name in VARIANTS:
        mine = sorted((r for r in rows if r["variant"] == name), key=lambda r: r["seed"])
        if mine:
            mean = statistics.mean(r["bpb"][-1] for r in mine)
            finals = " / ".join(f"{r['bpb'][-1]:.4f}" for r in mine)
            gain = statistics.mean(r["bpb"][-1] - base[r["seed"]] for r in mine)
            print(f"| {name} | {mine[0]['steps']} | {len(mine)} | {finals} | {mean:.4f} | {gain:+.4f} |")


if __name__ == "__main__":
    main()

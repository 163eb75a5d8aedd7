"""How big is the corpus, and which recipe does it support: at 20 tokens per parameter (the 2025 recipes), and as
nanochat 2026's recipes plan their tokens?"""

from .configuration_hansard_gpt import HansardGPTConfig
from .settings import TOKENS_PER_PARAMETER
from .data import read_index
from .locations import TOKENIZER_SETTINGS

RECIPE_DEPTHS = (16, 24, 36, 48)
# The size rule (the project's brief): corpus tokens -> depth (below 4B d16, 4-10B d24, 10-20B d36, above 20B d48).
SEED_GUIDANCE = ((4e9, 16), (10e9, 24), (20e9, 36), (float("inf"), 48))


def split_counts(data_dir) -> dict[str, dict[str, int]]:
    """Tokens, documents and UTF-8 bytes of every prepared split."""
    return {split: {k: info[k] for k in ("tokens", "documents", "bytes")}
            for split, info in read_index(data_dir)["splits"].items()}


def seed_choice(tokens: float) -> int:
    """The depth the size rule picks for a corpus of `tokens` training tokens."""
    return next(depth for limit, depth in SEED_GUIDANCE if tokens < limit)


def recipe_table(train_tokens: int, ratio: float = TOKENS_PER_PARAMETER, vocab_size: int = TOKENIZER_SETTINGS["vocab_size"],
                 aspect_ratio: int = 32) -> list[dict]:
    """For each recipe depth: parameters, tokens needed at `ratio` tokens per parameter, and epochs of this corpus."""
    rows = []
    for depth in RECIPE_DEPTHS:
        params = HansardGPTConfig(depth=depth, vocab_size=vocab_size, aspect_ratio=aspect_ratio).num_parameters()
        needed = ratio * params
        rows.append(dict(depth=depth, params=params, tokens_needed=int(needed),
                         epochs=needed / train_tokens if train_tokens else float("inf")))
    return rows


def recipe_table_2026(train_tokens: int) -> list[dict]:
    """For each of nanochat 2026's recipes (`d16-2026` ...): parameters, those its budget counts, the tokens it trains
    on (its own plan: steps x batch, at 12 tokens per scaling parameter) and epochs of this corpus."""
    from .plan import plan
    from .recipe import Recipe

    rows = []
    for depth in RECIPE_DEPTHS:
        p = plan(Recipe.load(f"d{depth}-2026"))
        rows.append(dict(recipe=f"d{depth}-2026", params=p.params, counted=p.counted, tokens_needed=p.tokens,
                         epochs=p.tokens / train_tokens if train_tokens else float("inf")))
    return rows


def advice(train_tokens: int, ratio: float = TOKENS_PER_PARAMETER,
           vocab_size: int = TOKENIZER_SETTINGS["vocab_size"]) -> str:
    """Which recipe this corpus supports: the size rule's choice, and how often each would read the corpus."""
    table = recipe_table(train_tokens, ratio, vocab_size)
    epochs = {row["depth"]: row["epochs"] for row in table}
    one_pass = [depth for depth, e in epochs.items() if e <= 1.0]
    choice = seed_choice(train_tokens)
    rule = (f"By corpus size ({train_tokens / 1e9:.3g}B training tokens; the rule: under 4B d16, 4-10B d24, 10-20B d36, "
            f"above 20B d48): d{choice}.")
    reads = f"At {ratio:g} tokens per parameter d{choice} reads the corpus {epochs[choice]:.2f} times"
    if not one_pass:
        return f"{rule}\n{reads}, and no recipe fits in one pass: use more data, accept repeated epochs, or tiny."
    repeats = "" if choice in one_pass else " (more data, or expect some loss from repetition)"
    return f"{rule}\n{reads}{repeats}; the largest recipe that fits in one pass is d{max(one_pass)}."


def report(data_dir, split: str | None = None, ratio: float = TOKENS_PER_PARAMETER) -> str:
    """The text `hansard-hf count-tokens` prints."""
    counts = split_counts(data_dir)
    vocab_size = max(read_index(data_dir)["vocab_size"], TOKENIZER_SETTINGS["vocab_size"])
    lines = [f"{'split':<12}{'tokens':>15}{'documents':>12}{'bytes':>16}{'bytes/token':>13}"]
    for name, c in counts.items():
        if split in (None, name):
            per = c["bytes"] / c["tokens"] if c["tokens"] else 0.0
            lines.append(f"{name:<12}{c['tokens']:>15,}{c['documents']:>12,}{c['bytes']:>16,}{per:>13.2f}")
    train_tokens = counts["train"]["tokens"]
    lines += ["", f"{'recipe':<8}{'params':>16}{'tokens @' + format(ratio, 'g') + '/param':>20}{'epochs of train':>17}"]
    for row in recipe_table(train_tokens, ratio, vocab_size):
        lines.append(f"d{row['depth']:<7}{row['params']:>16,}{row['tokens_needed']:>20,}{row['epochs']:>17.2f}")
    lines += ["", f"{'recipe':<10}{'params':>16}{'counted':>15}{'tokens (its plan)':>20}{'epochs of train':>17}"]
    for row in recipe_table_2026(train_tokens):
        lines.append(f"{row['recipe']:<10}{row['params']:>16,}{row['counted']:>15,}{row['tokens_needed']:>20,}"
                     f"{row['epochs']:>17.2f}")
    lines.append("(nanochat 2026's recipes: 12 tokens per counted parameter, block matrices + lm_head)")
    return "\n".join(lines + ["", advice(train_tokens, ratio, vocab_size)])

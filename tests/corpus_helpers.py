"""Small generated corpora in the formats the data pipeline reads."""

import json
import random

SPEAKERS = ["Mr. Speaker", "The Prime Minister", "Mr. Jones", "Dame Margaret Hodge", "Lord Carrington"]
PHRASES = [
    "I beg to move that the Bill be now read a Second time.",
    "Will the right hon. Gentleman give way?",
    "The figures for 2019-20 show an increase of 12.5% in spending, some £1,234 million.",
    "Order. Order. The House will come to order.",
    "My hon. Friend makes an important point about the NHS in Wales.",
    "Question put and agreed to.",
]


SYLLABLES = ["par", "lia", "ment", "con", "sti", "tu", "en", "cy", "bud", "get", "min", "is", "ter", "ry", "act"]


def word(rng: random.Random) -> str:
    return "".join(rng.choices(SYLLABLES, k=rng.randint(1, 4)))


def debate(rng: random.Random, turns: int = 6) -> str:
    """Speaker turns of stock phrases, invented words and numbers, as in a Hansard debate section."""
    def turn():
        words = " ".join(word(rng) for _ in range(rng.randint(5, 15)))
        return f"{rng.choice(SPEAKERS)}: {rng.choice(PHRASES)} {words.capitalize()} {rng.randint(0, 99999)}."
    return "\n\n".join(turn() for _ in range(turns))


def documents(n: int = 60, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"debate-{i}", "text": debate(rng), "house": rng.choice(["commons", "lords"])} for i in range(n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def corpus_with_tokenizer(root, vocab_size: int, n: int = 120) -> list[dict]:
    """`root/corpus.jsonl` of `n` generated debates and `root/tok`, a tokenizer trained on them; returns the rows."""
    from hansard_hf.tokenization import save_tokenizer, train_tokenizer

    docs = documents(n)
    write_jsonl(root / "corpus.jsonl", docs)
    save_tokenizer(train_tokenizer((d["text"] for d in docs), vocab_size=vocab_size), root / "tok")
    return docs

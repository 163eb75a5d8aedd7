"""Our tokenizer vs rustbpe (nanochat's trainer) and data preparation vs tiktoken, on the shared Hansard text.

    python bench/tokenizer.py [--data ../shared/data/hansard/hansard_debates.jsonl] [--vocab 32768 65536]

Both tokenizers train on the train split with the same split pattern, vocabulary (special tokens included) and no
per-document cap, then compress the held-out test split: bytes per token (ours / rustbpe, target >= 1.0) and
training time (ours / rustbpe). Then `prepare` on the corpus repeated --repeat times (end to end: read, split, encode,
write) against tiktoken's bare encode_ordinary_batch of the same texts with the same merges (target: ratio <= 1.1).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import rustbpe
import tiktoken

from hansard_hf.data import Corpus, prepare
from hansard_hf.tokenization import (SPECIAL_TOKENS, SPLIT_PATTERN, bulk_encoder, mergeable_ranks, save_tokenizer,
                                    train_tokenizer)

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "hansard" / "hansard_debates.jsonl"


def compression(encode, texts) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / sum(map(len, encode(texts)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT))
    parser.add_argument("--vocab", type=int, nargs="+", default=[32768, 65536])
    parser.add_argument("--repeat", type=int, default=16, help="copies of the corpus that prepare reads")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data)]
    train = [r["text"] for r in rows if r["split"] == "train"]
    test = [r["text"] for r in rows if r["split"] == "test"]
    print(f"train {sum(map(len, train)) / 1e6:.1f}M chars, test {len(test)} documents")

    print(f"{'vocab':>7} {'ours B/tok':>11} {'rustbpe B/tok':>14} {'ratio':>6} {'ours s':>7} {'rustbpe s':>10} {'ratio':>6}")
    for vocab in args.vocab:
        start = time.perf_counter()
        ours = train_tokenizer(iter(train), vocab_size=vocab, doc_cap=10**9)
        ours_seconds = time.perf_counter() - start
        start = time.perf_counter()
        theirs = rustbpe.Tokenizer()
        theirs.train_from_iterator(iter(train), vocab - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
        theirs_seconds = time.perf_counter() - start
        reference = tiktoken.Encoding("rustbpe", pat_str=SPLIT_PATTERN,
                                      mergeable_ranks=dict(theirs.get_mergeable_ranks()), special_tokens={})
        a = compression(bulk_encoder(ours), test)
        b = compression(lambda t: reference.encode_ordinary_batch(t), test)
        print(f"{vocab:>7} {a:>11.3f} {b:>14.3f} {a / b:>6.3f} {ours_seconds:>7.1f} {theirs_seconds:>10.1f} "
              f"{ours_seconds / theirs_seconds:>6.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big = tmp / "corpus.jsonl"
        big.write_text("".join(json.dumps({"id": f"{k}-{r['id']}", "text": r["text"]}) + "\n"
                               for k in range(args.repeat) for r in rows))
        save_tokenizer(ours, tmp / "tok")
        texts = [json.loads(line)["text"] for line in big.open()]
        megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        start = time.perf_counter()
        index = prepare(Corpus(str(big)), tmp / "tok", tmp / "data")
        prepare_seconds = time.perf_counter() - start
        tokens = sum(s["tokens"] for s in index["splits"].values())
        encoding = tiktoken.Encoding("bare", pat_str=SPLIT_PATTERN, special_tokens={}, mergeable_ranks=mergeable_ranks(ours))
        start = time.perf_counter()
        encoding.encode_ordinary_batch(texts)
        tiktoken_seconds = time.perf_counter() - start
        print(f"prepare: {megabytes:.1f} MB in {prepare_seconds:.2f} s = {megabytes / prepare_seconds:.1f} MB/s, "
              f"{tokens / prepare_seconds / 1e6:.2f} M tokens/s")
        print(f"tiktoken encode only: {megabytes / tiktoken_seconds:.1f} MB/s   "
              f"ratio prepare/tiktoken time {prepare_seconds / tiktoken_seconds:.2f}")
        backend = ours.backend_tokenizer
        start = time.perf_counter()
        backend.encode_batch_fast(texts, add_special_tokens=False)
        print(f"tokenizers encode_batch_fast only: {megabytes / (time.perf_counter() - start):.1f} MB/s")


if __name__ == "__main__":
    main()

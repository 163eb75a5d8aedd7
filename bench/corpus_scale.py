"""Reading, tokenizer training and `prepare` of ParlParse XML as the corpus grows: time and peak memory at 1x, 8x and
32x the shared sample, each stage in a fresh process (its peak RSS from the kernel), plus the trainer against rustbpe
and prepare against tiktoken's bare encode at each size.

    python bench/corpus_scale.py [--raw ../shared/data/hansard/raw] [--scales 1 8 32] [--work /tmp/corpus_scale]

`read` parses the XML (once, into Parquet under $HANSARD_HF_HOME/parsed), `reread` reads that again as the tokenizer
trainer, `prepare` and `hansard-hf corpus` then do. The k-th copy of the sample has every letter of its text shifted by k places (a Caesar cipher: markup, entities,
digits and punctuation untouched), so each copy adds new words as a bigger corpus would: the worst case for the
tokenizer trainer's pre-token counts (real text adds words far more slowly, and `max_chars` caps what the trainer
reads at 2 billion characters). Folder layout and re-scrapes are kept, so the reader does all its real work.
"""

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "hansard" / "raw"
STAGES = ("read", "reread", "tokenizer", "prepare", "trainers", "encoders")
_TEXT = re.compile(rb">([^<]+)<")
_ENTITY = re.compile(rb"(&#?\w+;)")


def shifted(data: bytes, k: int) -> bytes:
    """The XML with every ASCII letter of its text nodes shifted by k (entities and markup untouched)."""
    if k == 0:
        return data
    table = bytes.maketrans(
        bytes(range(65, 91)) + bytes(range(97, 123)),
        bytes((c - 65 + k) % 26 + 65 for c in range(65, 91)) + bytes((c - 97 + k) % 26 + 97 for c in range(97, 123)))

    def text(match):
        parts = _ENTITY.split(match[1])
        return b">" + b"".join(p if _ENTITY.fullmatch(p) else p.translate(table) for p in parts) + b"<"

    return _TEXT.sub(text, data)


def build(raw: Path, folder: Path, copies: int) -> None:
    if (folder / "done").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    for k in range(copies):
        for file in raw.rglob("*.xml.gz"):
            target = folder / f"copy{k:02d}" / file.relative_to(raw)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.compress(shifted(gzip.decompress(file.read_bytes()), k), compresslevel=1))
    (folder / "done").write_text("")


def stage(name: str, corpus_dir: str, work: Path) -> dict:
    """One stage, in this process: what it did (the parent measures time and memory)."""
    from hansard_hf.data import Corpus, prepare
    from hansard_hf.tokenization import bulk_encoder, load_tokenizer, save_tokenizer, train_tokenizer

    corpus, start = Corpus(corpus_dir), time.perf_counter()
    if name in ("read", "reread"):  # read: parse the XML (into $HANSARD_HF_HOME/parsed); reread: from there
        characters = documents = 0
        for _, text in corpus.documents():
            characters, documents = characters + len(text), documents + 1
        return {"documents": documents, "characters": characters, "seconds": time.perf_counter() - start}
    if name == "tokenizer":
        shutil.rmtree(work / "tok", ignore_errors=True)
        save_tokenizer(train_tokenizer(corpus.texts("train")), work / "tok")
        return {"seconds": time.perf_counter() - start}
    if name == "prepare":
        shutil.rmtree(work / "data", ignore_errors=True)
        index = prepare(corpus, work / "tok", work / "data")
        return {"tokens": sum(s["tokens"] for s in index["splits"].values()), "seconds": time.perf_counter() - start}
    texts = list(corpus.texts("train")) if name == "trainers" else [text for _, text in corpus.documents()]
    if name == "trainers":  # the same texts in memory: our trainer (rustbpe + conversion) and rustbpe alone
        import rustbpe

        from hansard_hf.tokenization import SPECIAL_TOKENS, SPLIT_PATTERN

        start = time.perf_counter()
        train_tokenizer(iter(texts))
        ours = time.perf_counter() - start
        start = time.perf_counter()
        rustbpe.Tokenizer().train_from_iterator(iter(texts), 65536 - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
        return {"ours_s": ours, "rustbpe_s": time.perf_counter() - start}
    encode = bulk_encoder(load_tokenizer(work / "tok"))  # tiktoken, the same merges
    start = time.perf_counter()
    encode(texts)
    return {"tiktoken_s": time.perf_counter() - start}


def measured(name: str, corpus_dir: Path, work: Path) -> dict:
    """Run a stage in a child process: its report (with the stage's own seconds, imports aside) and peak RSS."""
    if name == "read":
        shutil.rmtree(work / "home", ignore_errors=True)
    child = subprocess.Popen([sys.executable, __file__, "--stage", name, "--corpus", str(corpus_dir), "--work", str(work)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                             env={**os.environ, "HANSARD_HF_HOME": str(work / "home")})
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"stage {name} failed ({status})")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, **json.loads(output.decode().strip().splitlines()[-1])}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", default=str(DEFAULT))
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--work", default="/tmp/corpus_scale")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, args.corpus, Path(args.work))))
        return
    print(f"{'scale':>5} {'text MB':>8} {'stage':<10} {'s':>7} {'MB/s':>6} {'peak RSS MB':>12}  notes")
    for scale in args.scales:
        work = Path(args.work) / f"x{scale}"
        build(Path(args.raw), work / "xml", scale)
        rows = {name: measured(name, work / "xml", work) for name in STAGES}
        megabytes = rows["read"]["characters"] / 1e6
        for name in ("read", "reread", "tokenizer", "prepare"):
            r = rows[name]
            note = f"{rows['read']['documents']:,} documents" if name == "read" else \
                f"{r['tokens']:,} tokens" if name == "prepare" else ""
            print(f"{scale:>5} {megabytes:>8.1f} {name:<10} {r['seconds']:>7.1f} {megabytes / r['seconds']:>6.1f} "
                  f"{r['peak_rss_mb']:>12.0f}  {note}", flush=True)
        trainers, encoders = rows["trainers"], rows["encoders"]
        print(f"{scale:>5} {megabytes:>8.1f} trainer: ours {trainers['ours_s']:.1f} s, rustbpe {trainers['rustbpe_s']:.1f} s, "
              f"ratio {trainers['ours_s'] / trainers['rustbpe_s']:.2f}; prepare / tiktoken encode of the same texts "
              f"{rows['prepare']['seconds'] / encoders['tiktoken_s']:.2f} ({encoders['tiktoken_s']:.1f} s)", flush=True)


if __name__ == "__main__":
    main()

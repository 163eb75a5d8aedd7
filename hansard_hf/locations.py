"""Every default location (and the default corpus), decided here and nowhere else: the CLI, recipes, eval, count-tokens and train_hansard.sh
all ask this module where a tokenizer, prepared data, an eval copy or a run goes unless told otherwise.

    $HANSARD_HF_HOME (default ~/.cache/hansard_hf)
      tokenizers/hansard-<vocab>-<fingerprint of corpus + every training setting>/
      data/<fingerprint of corpus + tokenizer file>/
      corpus/<fingerprint of corpus>/corpus_tokens_per_year.png   hansard-hf corpus' plot
      parsed/<fingerprint of the day files>/                 ParlParse XML parsed once into Parquet
      eval_tokenizers/<fingerprint of the checkpoint id>/      tokenizers of Hub checkpoints, for eval
    runs/<run name>/                                           relative to the working directory, like output_dir
"""

import hashlib
import json
import os
from pathlib import Path

DEFAULT_DATASET = "common-pile/uk_hansard"  # the corpus, when none is named

# The Hansard tokenizer's training settings (nanochat's tok_train defaults, see hansard_hf.tokenization).
TOKENIZER_SETTINGS = {"vocab_size": 65536, "doc_cap": 100_000, "max_chars": 2_000_000_000, "nfkc": False}


def home() -> Path:
    """Where tokenizers and prepared data live by default: $HANSARD_HF_HOME or ~/.cache/hansard_hf."""
    return Path(os.environ.get("HANSARD_HF_HOME", Path.home() / ".cache" / "hansard_hf"))


def fingerprint(*parts) -> str:
    """Ten hex digits that change whenever any part changes."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def tokenizer_dir(corpus, **settings) -> Path:
    """The folder of the Hansard tokenizer trained on `corpus` with `settings` (TOKENIZER_SETTINGS' keys)."""
    unknown = set(settings) - set(TOKENIZER_SETTINGS)
    if unknown:
        raise TypeError(f"unknown tokenizer setting(s) {sorted(unknown)}")
    settings = {**TOKENIZER_SETTINGS, **settings}
    return home() / "tokenizers" / f"hansard-{settings['vocab_size']}-{fingerprint(corpus.identity(), settings)}"


def tokenizer_hash(path) -> str:
    """A fingerprint of the tokenizer in `path`: a different one means different token ids."""
    return hashlib.sha256((Path(path) / "tokenizer.json").read_bytes()).hexdigest()[:16]


def data_dir(corpus, tokenizer_folder) -> Path:
    """The folder of `corpus` tokenized by the tokenizer in `tokenizer_folder` (which must exist)."""
    return home() / "data" / fingerprint(corpus.identity(), tokenizer_hash(tokenizer_folder))


def parsed_dir() -> Path:
    """Where ParlParse XML corpora are kept parsed (Parquet), one folder per set of day files."""
    return home() / "parsed"


def corpus_report_dir(corpus) -> Path:
    """Where `hansard-hf corpus` writes its plot of `corpus` unless told."""
    return home() / "corpus" / fingerprint(corpus.identity())


def eval_tokenizer_dir(checkpoint) -> Path:
    """Where `hansard-hf eval` keeps a local copy of a Hub checkpoint's tokenizer."""
    return home() / "eval_tokenizers" / fingerprint(str(checkpoint))


def run_dir(name: str) -> Path:
    """A run's output folder."""
    return Path("runs") / name

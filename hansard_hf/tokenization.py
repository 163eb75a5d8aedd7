"""The Hansard tokenizer: nanochat's byte-level BPE (GPT-4 split pattern, numbers in groups of 1-2 digits), trained
with rustbpe (nanochat's trainer) and saved as a `PreTrainedTokenizerFast` that `AutoTokenizer` loads, plus a token-bytes table.

The special tokens take the last ids, as in nanochat (`<|bos|>` = vocab_size - 9). `token_bytes.pt` holds each
token's length in raw bytes (special tokens 0), the denominator of bits per byte.
"""

import hashlib
import os
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from .files import atomic_directory
from .locations import TOKENIZER_SETTINGS

SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = [
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
]
BOS = SPECIAL_TOKENS[0]
TOKEN_BYTES_FILE = "token_bytes.pt"


def capped_texts(texts: Iterable[str], doc_cap: int = TOKENIZER_SETTINGS["doc_cap"],
                 max_chars: int = TOKENIZER_SETTINGS["max_chars"]) -> Iterator[str]:
    """The first `doc_cap` characters of each text, stopping once `max_chars` characters have been yielded."""
    total = 0
    for text in texts:
        text = text[:doc_cap]
        yield text
        total += len(text)
        if total >= max_chars:
            return


def train_tokenizer(texts: Iterable[str], vocab_size: int = TOKENIZER_SETTINGS["vocab_size"],
                    doc_cap: int = TOKENIZER_SETTINGS["doc_cap"], max_chars: int = TOKENIZER_SETTINGS["max_chars"],
                    nfkc: bool = TOKENIZER_SETTINGS["nfkc"]) -> PreTrainedTokenizerFast:
    """Train the BPE on a stream of texts with rustbpe, nanochat's own trainer (only pre-token counts are held in
    memory; about 3x faster than `tokenizers`' trainer at equal compression, bench/tokenizer.py), and save its merges
    as a `tokenizers` BPE that gives the same ids as the tiktoken encoding of rustbpe's ranks (tested)."""
    import rustbpe

    merges_budget = vocab_size - len(SPECIAL_TOKENS)
    if merges_budget < 256:
        raise ValueError(f"vocab_size={vocab_size} leaves no room for the 256 byte tokens and {len(SPECIAL_TOKENS)} specials.")
    characters = 0

    def counted(stream):
        nonlocal characters
        for text in stream:
            characters += len(text)
            yield unicodedata.normalize("NFKC", text) if nfkc else text

    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(counted(capped_texts(texts, doc_cap, max_chars)), merges_budget, pattern=SPLIT_PATTERN)
    if characters == 0:
        raise ValueError("train_tokenizer: the corpus is empty.")
    tokenizer = bpe_tokenizer(dict(trainer.get_mergeable_ranks()), nfkc)
    tokenizer.add_special_tokens(SPECIAL_TOKENS)  # appended: they take the last ids
    return wrap(tokenizer)


def bpe_tokenizer(ranks: dict[bytes, int], nfkc: bool = False) -> Tokenizer:
    """A byte-level `tokenizers` BPE with tiktoken's semantics for mergeable `ranks` (bytes -> id, the 256 single
    bytes first): each token's merge is the pair BPE reaches it from with lower ranks alone, and a pre-token that is
    a whole token is taken as it is (ignore_merges), as tiktoken does."""
    char = _bytes_to_unicode()
    spelled = {token: "".join(char[b] for b in token) for token in ranks}
    merges = [tuple(spelled[part] for part in _last_merge(ranks, token, rank))
              for token, rank in sorted(ranks.items(), key=lambda item: item[1]) if rank >= 256]
    tokenizer = Tokenizer(models.BPE(vocab={spelled[t]: r for t, r in ranks.items()}, merges=merges,
                                     ignore_merges=True, byte_fallback=False))
    if nfkc:
        tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _last_merge(ranks: dict[bytes, int], token: bytes, rank: int) -> tuple[bytes, bytes]:
    """The two tokens BPE joins last to make `token`, merging only pairs of rank below `rank`: the only split into two
    lower-ranked tokens when there is one (most tokens), else found by running BPE."""
    splits = [i for i in range(1, len(token)) if ranks.get(token[:i], rank) < rank and ranks.get(token[i:], rank) < rank]
    if len(splits) == 1:
        return token[: splits[0]], token[splits[0] :]
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        pairs = [(ranks.get(parts[i] + parts[i + 1], rank), i) for i in range(len(parts) - 1)]
        best, i = min(pairs)
        if best >= rank:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} (rank {rank}) is not the merge of two lower-ranked tokens.")
    return parts[0], parts[1]


def wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=BOS, pad_token=BOS,
        additional_special_tokens=SPECIAL_TOKENS[1:], clean_up_tokenization_spaces=False,
    )


def token_bytes(tokenizer: PreTrainedTokenizerFast) -> torch.Tensor:
    """Byte length of every token id from its raw bytes (not its decoded string); special tokens count 0."""
    byte_of = {char: byte for byte, char in enumerate(_bytes_to_unicode())}
    special = set(tokenizer.all_special_ids)
    lengths = torch.zeros(len(tokenizer), dtype=torch.int32)
    for token, index in tokenizer.get_vocab().items():
        if index not in special:
            lengths[index] = sum(1 for char in token if char in byte_of)
    return lengths


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable character table used by the ByteLevel pre-tokenizer, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def mergeable_ranks(tokenizer: PreTrainedTokenizerFast) -> dict[bytes, int]:
    """The tokenizer's vocabulary without its special tokens as tiktoken (and rustbpe) write it: raw bytes -> id."""
    byte_of = {char: byte for byte, char in enumerate(_bytes_to_unicode())}
    special = set(tokenizer.all_special_tokens)
    return {bytes(byte_of[c] for c in token): index for token, index in tokenizer.get_vocab().items()
            if token not in special}


def bulk_encoder(tokenizer: PreTrainedTokenizerFast, threads: int | None = None):
    """A function texts -> token id lists, for preparing data: tiktoken built from the same merges (about 3x faster
    than `tokenizers` on 2 cores; tests prove the ids identical) or, where it cannot express the tokenizer (a
    normalizer such as NFKC), the tokenizer's own `encode_batch_fast`. Special-token strings inside a document are
    plain text, as in nanochat (the ids of `tokenizer(text, split_special_tokens=True)`)."""
    threads = threads or os.cpu_count() or 1
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.encode_special_tokens = True
    special = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
    ranks = mergeable_ranks(tokenizer)
    if backend.normalizer is not None or len(ranks) + len(special) != len(tokenizer):
        return lambda texts: [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    import tiktoken

    encoding = tiktoken.Encoding("hansard", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens=special)
    return lambda texts: encoding.encode_ordinary_batch(texts, num_threads=threads)


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir, overwrite: bool = False) -> Path:
    """Write the tokenizer and its token-bytes table to `out_dir`, atomically."""
    with atomic_directory(out_dir, overwrite) as tmp:
        try:
            tokenizer.save_pretrained(tmp)
        except Exception as error:  # noqa: BLE001 - tokenizers reports a failed write (a full disk) as a bare Exception
            if isinstance(error, OSError):
                raise
            raise OSError(f"{out_dir}: writing the tokenizer failed ({error}): free some disk space, or write it "
                          "elsewhere.") from error
        torch.save(token_bytes(tokenizer), tmp / TOKEN_BYTES_FILE)
    return Path(out_dir)


def ensure_tokenizer(corpus, folder, **settings) -> Path:
    """The tokenizer in `folder`; when there is none, the Hansard tokenizer trained on `corpus`' train split with
    `settings` (TOKENIZER_SETTINGS' keys) is saved there first (never over a folder that exists: not a tokenizer's)."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").exists():
        save_tokenizer(train_tokenizer(corpus.texts("train"), **settings), folder)
    return folder


def load_tokenizer(path) -> PreTrainedTokenizerFast:
    """The fast tokenizer saved in `path`, read from its files alone (no config.json, no code from the folder)."""
    if not (Path(path) / "tokenizer.json").exists():
        raise FileNotFoundError(f"{path} holds no tokenizer.json: train one with `hansard-hf tokenizer train`.")
    return PreTrainedTokenizerFast.from_pretrained(path)


def load_token_bytes(path) -> torch.Tensor:
    """The token-bytes table saved beside a tokenizer (computed from the tokenizer if the file is missing)."""
    file = Path(path) / TOKEN_BYTES_FILE
    return torch.load(file, weights_only=True) if file.exists() else token_bytes(load_tokenizer(path))  # tensors only


def tokenizer_fingerprint(tokenizer) -> str | None:
    """A fingerprint of a loaded fast tokenizer's vocabulary and rules (None for a slow one): checkpoints record it."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return hashlib.sha256(backend.to_str().encode()).hexdigest()[:16] if backend is not None else None

"""The Hansard tokenizer: nanochat's BPE trained with rustbpe and saved for `tokenizers` with identical ids, special
tokens last, exact round trips, token bytes."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from hansard_hf.tokenization import (
    SPECIAL_TOKENS, bulk_encoder, capped_texts, load_token_bytes, save_tokenizer, token_bytes, train_tokenizer,
)
from corpus_helpers import documents

HANSARD = Path(__file__).resolve().parents[2] / "shared" / "data" / "hansard" / "hansard_debates.jsonl"
AWKWARD = [
    "Hello  world\n\n\n 12345 678",
    "ünïcödé, naïve café — «quotes» ‘single’ £100 €5",
    "日本語のテキスト 中文 한국어 🎉🇬🇧 👩‍👩‍👧",
    "tabs\tand\r\nwindows line ends\u00a0nbsp\u200bzero-width",
    "combining: e\u0301 a\u0308 and a lone surrogate-free astral 𝔘𝔫𝔦",
    "",
    "   leading and trailing spaces   ",
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer((d["text"] for d in documents(80)), vocab_size=600)


def test_special_tokens_take_the_last_ids(tokenizer, tmp_path):
    assert len(tokenizer) == 600
    assert tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS) == list(range(591, 600))
    save_tokenizer(tokenizer, tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.bos_token == "<|bos|>" and loaded.bos_token_id == 591
    assert loaded("Order. Order.").input_ids == tokenizer("Order. Order.").input_ids  # no BOS added implicitly


@pytest.mark.parametrize("text", AWKWARD)
def test_encode_decode_is_exact_for_any_utf8(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text


def test_numbers_split_into_groups_of_at_most_two_digits(tokenizer):
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("1234567 2019-20", add_special_tokens=False).input_ids)
    digits = [p.lstrip("Ġ") for p in pieces if p.lstrip("Ġ").isdigit()]
    assert "".join(digits) == "1234567201920" and max(map(len, digits)) <= 2


def test_token_bytes_sum_to_the_utf8_length(tokenizer, tmp_path):
    table = token_bytes(tokenizer)
    assert table.dtype == torch.int32 and table[-9:].tolist() == [0] * 9
    assert table[:591].min() >= 1
    for text in AWKWARD + [d["text"] for d in documents(5, seed=3)]:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert table[ids].sum().item() == len(text.encode("utf-8"))
    save_tokenizer(tokenizer, tmp_path / "tok")
    assert torch.equal(load_token_bytes(tmp_path / "tok"), table)


def test_bulk_encoder_gives_the_tokenizers_ids(tokenizer):
    texts = AWKWARD + [d["text"] for d in documents(30, seed=5)]
    assert bulk_encoder(tokenizer)(texts) == [tokenizer(t, add_special_tokens=False).input_ids for t in texts]


def test_the_saved_tokenizer_is_rustbpes_merges_with_identical_ids():
    """The vocabulary is rustbpe's ranks, and `tokenizers`, tiktoken over those ranks and rustbpe itself give the same
    ids on awkward text, generated debates and (where present) the whole held-out Hansard split."""
    import rustbpe
    import tiktoken

    from hansard_hf.tokenization import SPLIT_PATTERN, _bytes_to_unicode

    train = [d["text"] for d in documents(200)] + AWKWARD
    ours = train_tokenizer(iter(train), vocab_size=2048)
    reference = rustbpe.Tokenizer()
    reference.train_from_iterator(iter(train), 2048 - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
    ranks = dict(reference.get_mergeable_ranks())
    char = _bytes_to_unicode()
    assert {"".join(char[b] for b in token): rank for token, rank in ranks.items()} == \
        {t: i for t, i in ours.get_vocab().items() if t not in SPECIAL_TOKENS}
    encoding = tiktoken.Encoding("rustbpe", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={})
    texts = AWKWARD + [d["text"] for d in documents(50, seed=9)] + ["Supercalifragilistic antidisestablishment 1234567"]
    if HANSARD.exists():
        texts += [r["text"] for r in map(json.loads, HANSARD.open()) if r["split"] == "test"]
    expected = encoding.encode_ordinary_batch(texts)
    assert [ours(t, add_special_tokens=False).input_ids for t in texts] == expected
    assert [reference.encode(t) for t in texts[:60]] == expected[:60]


def test_special_token_strings_in_documents_stay_plain_text(tokenizer):
    nfkc = train_tokenizer((d["text"] for d in documents(40)), vocab_size=400, nfkc=True)  # the non-tiktoken path
    text = "Order <|bos|> the House <|assistant_start|>"
    for tok in (tokenizer, nfkc):
        plain = tok(text, add_special_tokens=False, split_special_tokens=True).input_ids
        assert bulk_encoder(tok)([text]) == [plain]
        assert tok.bos_token_id not in plain and tok.decode(plain) == text


def test_nfkc_normalises_and_the_bulk_encoder_follows(tmp_path):
    nfkc = train_tokenizer((d["text"] for d in documents(40)), vocab_size=400, nfkc=True)
    assert nfkc.decode(nfkc("ﬁnance ①", add_special_tokens=False).input_ids) == "finance 1"
    texts = ["ﬁnance ①", "plain text 12"]
    assert bulk_encoder(nfkc)(texts) == [nfkc(t, add_special_tokens=False).input_ids for t in texts]


def test_caps_on_document_and_total_characters():
    assert list(capped_texts(["abcdef", "ghijkl", "mnopqr"], doc_cap=4, max_chars=8)) == ["abcd", "ghij"]


def test_training_streams_a_generator_once(tmp_path):
    consumed = []

    def stream():
        for d in documents(30):
            consumed.append(1)
            yield d["text"]

    tok = train_tokenizer(stream(), vocab_size=400)
    assert len(consumed) == 30 and len(tok) == 400


def test_too_small_vocab_is_a_clear_error():
    with pytest.raises(ValueError, match="vocab_size=200"):
        train_tokenizer(["some text"], vocab_size=200)


@pytest.mark.slow
@pytest.mark.skipif(not HANSARD.exists(), reason="../shared/data/hansard is not here")
def test_on_real_hansard_bytes_per_token_and_identical_bulk_ids():
    rows = [json.loads(line) for line in HANSARD.open()]
    train = [r["text"] for r in rows if r["split"] == "train"]
    test = [r["text"] for r in rows if r["split"] == "test"]
    tok = train_tokenizer(iter(train), vocab_size=32768)
    ids = bulk_encoder(tok)(test)
    assert ids == [e.ids for e in tok.backend_tokenizer.encode_batch(test, add_special_tokens=False)]
    bytes_per_token = sum(len(t.encode()) for t in test) / sum(map(len, ids))
    assert bytes_per_token > 4.85  # rustbpe and GPT-2 reach ~4.92 and 4.79 on this text

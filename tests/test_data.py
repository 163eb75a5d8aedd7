"""Corpus reading, document splits, token shards with a cache, packed rows, token counts and recipe advice."""

import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from hansard_hf.counting import advice, recipe_table, recipe_table_2026, report, seed_choice
from hansard_hf.data import Corpus, TokenRows, prepare, read_index, split_of, token_dtype
from hansard_hf.tokenization import save_tokenizer, train_tokenizer
from corpus_helpers import corpus_with_tokenizer, documents, write_jsonl

HANSARD = Path(__file__).resolve().parents[2] / "shared" / "data" / "hansard" / "hansard_debates.jsonl"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, corpus_with_tokenizer(root, vocab_size=500)


def test_split_by_id_hash_is_deterministic_and_about_90_5_5():
    counts = Counter(split_of(f"doc-{i}") for i in range(20000))
    assert abs(counts["train"] / 20000 - 0.90) < 0.01 and abs(counts["test"] / 20000 - 0.05) < 0.01
    assert split_of("debates2009-10-26b#s2") == split_of("debates2009-10-26b#s2")


def test_local_formats_give_the_same_documents(tmp_path):
    docs = documents(10)
    write_jsonl(tmp_path / "a.jsonl", docs)
    (tmp_path / "b.json").write_text(json.dumps(docs))
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "c.parquet")
    expected = [(split_of(d["id"]), d["text"]) for d in docs]
    for source in ("a.jsonl", "b.json", "c.parquet"):
        assert list(Corpus(str(tmp_path / source)).documents()) == expected, source
    folder = tmp_path / "texts"
    folder.mkdir()
    for d in docs[:3]:
        (folder / f"{d['id']}.txt").write_text(d["text"])
    texts = sorted(text for _, text in Corpus(str(folder)).documents())
    assert texts == sorted(d["text"] for d in docs[:3])  # one document per text file
    (tmp_path / "more.jsonl").write_text((tmp_path / "a.jsonl").read_text())
    assert len(list(Corpus(str(tmp_path / "*.jsonl")).documents())) == 20


def test_split_field_and_text_field(tmp_path):
    rows = [{"body": "hello", "part": "validation"}, {"body": "world", "part": "train"}]
    corpus = Corpus(str(write_jsonl(tmp_path / "x.jsonl", rows)), text_field="body", split_field="part")
    assert list(corpus.documents()) == [("validation", "hello"), ("train", "world")]


def test_bad_inputs_get_clear_errors(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"body": "hello", "id": 1}])
    with pytest.raises(ValueError, match=r"no field 'text'; the rows have \['body', 'id'\].*--text-field"):
        list(Corpus(str(path)).documents())
    with pytest.raises(FileNotFoundError, match="no such file"):
        Corpus(str(tmp_path / "missing.jsonl")).files()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .* files found"):
        Corpus(str(tmp_path / "empty")).files()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 au lait")
    with pytest.raises(ValueError, match="UTF-8"):
        list(Corpus(str(bad)).documents())
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_bytes(b'{"id": 0, "text": "ok"}\n{"id": 1, "text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, line 2, byte 23: not valid UTF-8 \(invalid continuation byte: byte 0xe9\)"):
        list(Corpus(str(bad_json)).documents())
    with pytest.raises(FileNotFoundError, match=r"bad.json: no such file, folder or glob \(did you mean .*bad.jsonl\?\)"):
        Corpus(str(tmp_path / "bad.json")).files()
    with pytest.raises(ValueError, match="part='dev'"):
        list(Corpus(str(write_jsonl(tmp_path / "s.jsonl", [{"text": "a", "part": "dev"}])), split_field="part").documents())
    assert Corpus("common-pile/uk_hansard").files() is None  # a Hub id: streamed with datasets


def test_prepare_writes_bos_separated_shards(workspace, tmp_path):
    root, docs = workspace
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(root / "tok")
    index = prepare(Corpus(str(root / "corpus.jsonl")), root / "tok", tmp_path / "data", shard_tokens=1000)
    assert index["dtype"] == "uint16" and index["bos_token_id"] == tok.bos_token_id
    for split in ("train", "validation", "test"):
        mine = [d["text"] for d in docs if split_of(d["id"]) == split]
        info = index["splits"][split]
        assert info["documents"] == len(mine) and info["bytes"] == sum(len(t.encode()) for t in mine)
        stream = np.concatenate([np.fromfile(tmp_path / "data" / s["file"], dtype=np.uint16) for s in info["shards"]])
        expected = [i for t in mine for i in [tok.bos_token_id, *tok(t, add_special_tokens=False).input_ids]]
        assert stream.tolist() == expected and info["tokens"] == len(expected)
    assert len(index["splits"]["train"]["shards"]) > 1 and all(
        s["tokens"] <= 1000 for s in index["splits"]["train"]["shards"])
    assert sum(index["splits"][s]["documents"] for s in index["splits"]) == len(docs)  # each doc once


def test_prepare_reuses_its_folder_and_replaces_another_only_when_told(workspace, tmp_path):
    root, docs = workspace
    corpus = Corpus(str(root / "corpus.jsonl"))
    prepare(corpus, root / "tok", tmp_path / "data")
    stamp = os.stat(tmp_path / "data" / "index.json").st_mtime_ns
    prepare(corpus, root / "tok", tmp_path / "data")
    assert os.stat(tmp_path / "data" / "index.json").st_mtime_ns == stamp  # reused, not rewritten
    prepare(corpus, root / "tok", tmp_path / "data", rebuild=True)
    assert os.stat(tmp_path / "data" / "index.json").st_mtime_ns != stamp  # same pair: rebuilt when asked
    save_tokenizer(train_tokenizer((d["text"] for d in docs), vocab_size=450), tmp_path / "other")
    with pytest.raises(ValueError, match="another tokenizer"):
        TokenRows(tmp_path / "data", "train", 8, tokenizer_dir=tmp_path / "other")
    before = (tmp_path / "data" / "index.json").read_bytes()
    with pytest.raises(FileExistsError, match="another corpus or tokenizer.*--replace"):
        prepare(corpus, tmp_path / "other", tmp_path / "data")
    assert (tmp_path / "data" / "index.json").read_bytes() == before  # left alone
    index = prepare(corpus, tmp_path / "other", tmp_path / "data", replace=True)
    assert index["vocab_size"] == 450
    TokenRows(tmp_path / "data", "train", 8, tokenizer_dir=tmp_path / "other")  # consistent again
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


FOREIGN_FOLDERS = {  # what a user might point --out at by mistake: prepare must leave each exactly as it was
    "the user's files": {"notes.txt": b"my notes", "sub/more.bin": b"\x00\x01"},
    "garbage index.json": {"index.json": b"{not json", "keep.txt": b"x"},
    "index.json that is a list": {"index.json": b"[1, 2]"},
    "index.json whose key is not ours": {"index.json": b'{"key": "x"}', "a.bin": b"1"},
    "index.json of other data": {"index.json": b'{"key": {"tokenizer": "t", "corpus": {}}}', "train-000.bin": b""},
}


@pytest.mark.parametrize("case", FOREIGN_FOLDERS)
def test_prepare_never_deletes_a_folder_it_did_not_make(workspace, tmp_path, case):
    root, _ = workspace
    folder = tmp_path / "out"
    for name, content in FOREIGN_FOLDERS[case].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    snapshot = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match=f"{folder}.*--replace"):
        prepare(Corpus(str(root / "corpus.jsonl")), root / "tok", folder)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == snapshot
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial folder left either


def test_prepare_into_a_file_is_refused(workspace, tmp_path):
    root, _ = workspace
    (tmp_path / "out").write_text("a file")
    with pytest.raises(FileExistsError, match="not prepared data"):
        prepare(Corpus(str(root / "corpus.jsonl")), root / "tok", tmp_path / "out")
    assert (tmp_path / "out").read_text() == "a file"


def test_token_dtype():
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


def test_token_rows_are_consecutive_windows_across_shards(workspace, tmp_path):
    root, _ = workspace
    prepare(Corpus(str(root / "corpus.jsonl")), root / "tok", tmp_path / "data", shard_tokens=777)
    index = read_index(tmp_path / "data")
    stream = np.concatenate([np.fromfile(tmp_path / "data" / s["file"], dtype=np.uint16)
                             for s in index["splits"]["train"]["shards"]])
    rows = TokenRows(tmp_path / "data", "train", max_seq_len=31)
    assert len(rows) == len(stream) // 32 and rows.vocab_size == 500
    for i in range(len(rows)):
        row = rows[i]
        window = torch.from_numpy(stream[i * 32 : (i + 1) * 32].astype(np.int64))
        assert torch.equal(row["input_ids"], window[:-1]) and torch.equal(row["shift_labels"], window[1:])
    with pytest.raises(IndexError):
        rows[len(rows)]
    with pytest.raises(ValueError, match="fewer than one row"):
        TokenRows(tmp_path / "data", "test", max_seq_len=10**6)


def test_empty_corpus_is_an_error_and_leaves_nothing(workspace, tmp_path):
    root, _ = workspace
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        prepare(Corpus(str(empty)), root / "tok", tmp_path / "data")
    assert not (tmp_path / "data").exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_trainer_refuses_data_from_a_larger_vocabulary(workspace, tmp_path):
    from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM, HansardTrainer
    from trainer_helpers import tiny_arguments

    root, _ = workspace
    prepare(Corpus(str(root / "corpus.jsonl")), root / "tok", tmp_path / "data")
    model = HansardGPTForCausalLM(HansardGPTConfig(depth=1, head_dim=16, vocab_size=100))
    args = tiny_arguments(tmp_path / "run", max_seq_len=8, total_batch_size=16, max_steps=1)
    with pytest.raises(ValueError, match="500-token vocabulary.*vocab_size=100"):
        HansardTrainer(model=model, args=args, train_dataset=TokenRows(tmp_path / "data", "train", 8))


def test_recipe_table_and_the_size_rule():
    table = {row["depth"]: row for row in recipe_table(3_000_000_000)}
    assert table[16]["tokens_needed"] == 20 * 117_440_512 and table[16]["epochs"] == pytest.approx(0.783, abs=1e-3)
    assert table[48]["epochs"] == pytest.approx(31_205_621_760 / 3e9)
    assert [seed_choice(t) for t in (3e9, 5e9, 15e9, 25e9)] == [16, 24, 36, 48]
    text = advice(4_500_000_000)
    assert text.splitlines()[0].endswith("above 20B d48): d24.") and "reads the corpus 1.20 times" in text
    assert text.endswith("the largest recipe that fits in one pass is d16.") and "repetition" in text
    assert advice(3_000_000_000).splitlines()[1] == ("At 20 tokens per parameter d16 reads the corpus 0.78 times; the "
                                                     "largest recipe that fits in one pass is d16.")
    small = advice(1_000_000)
    assert len(small.splitlines()) == 2 and small.count("2348.81") == 1 and "no recipe fits in one pass" in small
    rows = {row["recipe"]: row for row in recipe_table_2026(3_000_000_000)}
    assert rows["d24-2026"]["counted"] == 780_142_272 and rows["d24-2026"]["params"] == 2_088_765_194
    assert rows["d24-2026"]["tokens_needed"] == 8_928 * 2**20  # nanochat's own d24 plan: 8,928 steps of 2^20 tokens
    assert rows["d16-2026"]["epochs"] == pytest.approx(6_144 * 2**19 / 3e9)


@pytest.mark.slow
@pytest.mark.skipif(not HANSARD.exists(), reason="../shared/data/hansard is not here")
def test_real_hansard_end_to_end(tmp_path):
    corpus = Corpus(str(HANSARD), split_field="split")
    save_tokenizer(train_tokenizer(corpus.texts("train"), vocab_size=8192), tmp_path / "tok")
    index = prepare(corpus, tmp_path / "tok", tmp_path / "data")
    splits = index["splits"]
    assert [splits[s]["documents"] for s in ("train", "validation", "test")] == [4029, 233, 232]
    rows = TokenRows(tmp_path / "data", "validation", 256, tokenizer_dir=tmp_path / "tok")
    assert len(rows) == splits["validation"]["tokens"] // 257
    text = report(tmp_path / "data")
    assert "train" in text and "d16" in text and "no recipe fits in one pass" in text
    assert re.search(r"d24-2026 +2,088,765,194 +780,142,272 +9,361,686,528 +[0-9]+\.[0-9]{2}\n", text)


def test_a_missing_local_file_is_not_taken_for_a_hub_id(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        Corpus("data/hansard.jsonl").files()

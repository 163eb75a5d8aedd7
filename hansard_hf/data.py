"""Corpus -> documents -> token ids -> packed rows.

Documents come from a Hub dataset (default `common-pile/uk_hansard`, streamed) or local JSONL/JSON/Parquet/text
files, globs or folders. Each document belongs to exactly one split, chosen by a hash of its id (or by a split
field). `prepare` tokenizes every split in one streaming pass, BOS before every document, into uint16 (uint32 above
65,536 ids) shards with a JSON index; `TokenRows` serves rows of max_seq_len + 1 tokens from memory-mapped shards.
"""

import glob
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import xxhash
from tqdm.auto import tqdm

from .parlparse import (BODY_BY_FOLDER, PARSED_MANIFEST, XML_SUFFIXES, check_day_file, day_of, hansard_files,
                        is_xml_file, latest_versions, parsed, parsed_folder, read_parsed)
from .selection import SPLITS, ParagraphFilter, bodies_named, body_of, date_bound, names, split_of, temporal_split
from .files import CHECKSUM, atomic_directory, checksum, did_you_mean, is_hub_id
from . import locations
from .locations import DEFAULT_DATASET, tokenizer_hash
from .tokenization import bulk_encoder, load_tokenizer

logger = logging.getLogger(__name__)

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text"}
INDEX_FILE = "index.json"
_READING_FIELDS = ("source", "text_field", "id_field", "split_field", "max_documents")  # the fields before selection
# where a table's rows keep what selection reads, first match wins (the shared JSONL; the Common Pile)
_METADATA_FIELDS = {"body": ("body", "type", "source"), "date": ("date", "created"),
                    "language": ("language", "metadata"), "speakers": ("speakers",)}
FORMAT_VERSION = 3  # bump when what is written for the same corpus and tokenizer changes (3: shard checksums)


def is_hub_dataset(source: str) -> bool:
    """Whether `source` names a Hub dataset (owner/name, and no such local path) rather than local files."""
    return is_hub_id(source) and Path(source).suffix not in LOCAL_FORMATS


def _format(path) -> str | None:
    return "xml" if is_xml_file(path) else LOCAL_FORMATS.get(Path(path).suffix)


@dataclass(frozen=True)
class Document:
    """A document as the pipeline sees it: its split, its text, and what selection reads (None where unknown)."""

    split: str
    text: str
    body: str | None = None
    date: str | None = None
    language: str | None = None
    speakers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Corpus:
    """Where the documents are, how to read them, which to keep and how to split them."""

    source: str = DEFAULT_DATASET
    text_field: str = "text"
    id_field: str = "id"
    split_field: str | None = None  # use this field's value (train/validation/test) instead of the id hash
    max_documents: int | None = None  # read only the first documents (a streamed slice)
    bodies: tuple[str, ...] = ()  # keep only these bodies (or groups: westminster, written, devolved); () keeps all
    since: str | None = None  # keep documents dated on or after this (YYYY, YYYY-MM or YYYY-MM-DD)
    before: str | None = None  # ... and before this
    languages: tuple[str, ...] = ()  # keep only these languages (en, cy); () keeps all
    validation_from: str | None = None  # a temporal split: train before this date, validation from it ...
    test_from: str | None = None  # ... and test from this date on
    dedup: bool = False  # remove paragraphs the corpus already had (exact and near copies), across splits

    def __post_init__(self):
        object.__setattr__(self, "bodies", bodies_named(self.bodies))
        object.__setattr__(self, "languages", names(self.languages))
        for field in ("since", "before", "validation_from", "test_from"):
            object.__setattr__(self, field, date_bound(getattr(self, field), field))
        if self.since and self.before and self.since >= self.before:
            raise ValueError(f"since={self.since} is not before before={self.before}: the date range is empty.")
        if (self.validation_from is None) != (self.test_from is None):
            raise ValueError("a temporal split needs both validation_from and test_from (e.g. validation_from=2020 "
                             "test_from=2021: train before 2020, validation 2020, test from 2021).")
        if self.validation_from and self.validation_from >= self.test_from:
            raise ValueError(f"validation_from={self.validation_from} must come before test_from={self.test_from}.")
        if self.validation_from and self.split_field:
            raise ValueError("split_field and a temporal split (validation_from, test_from) both choose the split: "
                             "use one.")

    def identity(self) -> dict:
        """What makes this corpus this one (fingerprints, prepared data's key): every field, the selection's only
        where it is set, so folders prepared before selection existed keep their names."""
        return {k: v for k, v in asdict(self).items() if k in _READING_FIELDS or v not in ((), None, False)}

    @property
    def selects(self) -> bool:
        return bool(self.bodies or self.since or self.before or self.languages)

    def describe(self) -> str:
        """The selection and split, in words (for messages and the corpus summary)."""
        parts = [f"bodies {', '.join(self.bodies)}"] if self.bodies else []
        if self.since or self.before:
            parts.append("dates " + " ".join(filter(None, (self.since and f"from {self.since}",
                                                          self.before and f"before {self.before}"))))
        if self.languages:
            parts.append(f"languages {', '.join(self.languages)}")
        split = (f"train before {self.validation_from}, validation before {self.test_from}, test from then on"
                 if self.validation_from else f"split by {self.split_field}" if self.split_field
                 else f"split by a hash of {self.id_field}")
        return "; ".join(parts + [split] + (["duplicate paragraphs removed"] if self.dedup else []))

    def files(self) -> list[str] | None:
        """The local files of `source` (a file, glob or folder); None when it names a Hub dataset. ParlParse day files
        (*.xml, *.xml.gz; changedates.txt beside them aside) are read as XML: those of Hansard bodies (not the other
        records ParlParse keeps, such as the register of interests), of each day only the latest re-scrape."""
        return self._found()[0]

    def _found(self) -> tuple[list[str] | None, list[str]]:
        """(`files()`, the ParlParse files passed over as not Hansard), from one look at the source."""
        path = Path(self.source)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if _format(p) and p.is_file())
            if any(is_xml_file(f) for f in found):  # ParlParse's folders: its changedates.txt files are not text
                found = [f for f in found if Path(f).name != "changedates.txt"]
        elif any(char in self.source for char in "*?["):
            found = sorted(f for f in glob.glob(self.source, recursive=True) if _format(f))
        elif path.exists():
            found = [str(path)]
        elif is_hub_dataset(self.source):
            return None, []
        else:
            raise FileNotFoundError(f"{self.source}: no such file, folder or glob{did_you_mean(path)}, nor a Hub "
                                    "dataset id (owner/name).")
        if not found:
            raise FileNotFoundError(f"{self.source}: no {'/'.join([*LOCAL_FORMATS, *XML_SUFFIXES])} files found.")
        if all(os.path.getsize(f) == 0 for f in found):
            raise ValueError(f"{self.source}: the corpus is empty.")
        formats = {_format(f) for f in found}
        if len(formats) != 1 or None in formats:
            raise ValueError(f"{self.source}: mixes or lacks formats ({sorted(map(str, formats))}); use one of "
                             f"{[*LOCAL_FORMATS, *XML_SUFFIXES]}.")
        if formats != {"xml"}:
            return found, []
        hansard, others = hansard_files(found)
        if not hansard:
            raise ValueError(f"{self.source}: none of its {len(found):,} XML files is a Hansard body's record (by name "
                             f"or folder: {', '.join(sorted(BODY_BY_FOLDER))}); point --dataset at ParlParse's "
                             "scrapedxml folders of debates and answers.")
        return latest_versions(hansard), others

    def day_files(self, files: list[str]) -> list[str]:
        """The day files (of `files()`) that the selection keeps, judged by their names alone (no parsing)."""
        return [file for file in files if self.keeps(*day_of(file))]

    def check(self, parse: bool = False) -> None:
        """What can be checked before reading the documents: the files are there, and for ParlParse XML that every
        day file names a body and a date, the selection keeps some, and those start as ParlParse files. With
        `parse` (before tokenizer training or preparation), every selected day file is also parsed whole, into the
        cache the documents are then read from (`parlparse.parsed`); once they are, only their names are checked."""
        files, passed_over = self._found()
        if files is None or not is_xml_file(files[0]):
            return
        if passed_over:
            folders = sorted({Path(f).parent.name for f in passed_over})
            logger.warning("%s: passed over %d XML files that are not Hansard debates or answers (folders %s).",
                           self.source, len(passed_over), ", ".join(folders))
        kept = self.day_files(files)  # every file's name names a body and a date
        if not kept:
            raise ValueError(self._no_day_selected(files))
        if parse:
            parsed(kept, locations.parsed_dir())
        elif not (parsed_folder(kept, locations.parsed_dir()) / PARSED_MANIFEST).exists():  # parsed: they are fine
            for file in kept:
                check_day_file(file)

    def dataset(self):
        """The corpus as a streaming `datasets.IterableDataset` (memory stays bounded)."""
        from datasets import load_dataset

        files = self.files()
        if files is None:
            return load_dataset(self.source, split="train", streaming=True)
        builder = LOCAL_FORMATS[Path(files[0]).suffix]
        extra = {"sample_by": "document"} if builder == "text" else {}
        return load_dataset(builder, data_files=files, split="train", streaming=True, **extra)

    def selected(self, counts: dict | None = None, batch_size: int = 1000) -> Iterator[Document]:
        """Every document the selection keeps, with its split, duplicate paragraphs removed if `dedup`. `counts`
        (a dict) gets the documents read, selected and kept (after deduplication), and the duplicate paragraphs and
        emptied documents removed per split. For XML, documents are read only from the day files the selection keeps.
        Nothing kept is an error naming the selection and what the corpus has."""
        counts = counts if counts is not None else {}
        counts.update(read=0, selected=0, kept=0, removed={s: {"exact": 0, "near": 0, "documents": 0} for s in SPLITS})
        dedup = ParagraphFilter() if self.dedup else None
        seen = []  # (body, date, language) of the first rows, for the message when nothing is kept
        for split, text, doc_id, body, date, language, speakers in self._rows(batch_size):
            counts["read"] += 1
            if len(seen) < 100_000:
                seen.append((body, date, language))
            if not self.keeps(body, date, language):
                continue
            counts["selected"] += 1
            if self.validation_from or split is None:
                split = self.split(str(doc_id) if doc_id is not None else hashlib.sha1(text.encode()).hexdigest(), date)
            if dedup is not None:
                exact, near = dedup.exact, dedup.near
                text = dedup(text)
                removed = counts["removed"][split]
                removed["exact"] += dedup.exact - exact
                removed["near"] += dedup.near - near
                if not text:
                    removed["documents"] += 1
                    continue
            counts["kept"] += 1
            yield Document(split, text, body, date, language, tuple(speakers) if speakers is not None else None)
        if not counts["kept"] and self.selects:
            files = self.files()
            if files is not None and is_xml_file(files[0]):
                raise ValueError(self._no_day_selected(files))
            raise ValueError(self._nothing_selected(counts["read"], seen))

    def keeps(self, body, date, language) -> bool:
        """Whether the selection keeps a document of this body, date and language."""
        if self.bodies and body not in self.bodies:
            return False
        if (self.since and (date or "") < self.since) or (self.before and (date or "9999") >= self.before):
            return False
        return not self.languages or language in self.languages

    def split(self, key: str, date: str | None) -> str:
        """The split of a document: by its date under a temporal split, else by a hash of `key` (its id)."""
        return temporal_split(date, self.validation_from, self.test_from) if self.validation_from else split_of(key)

    def _no_day_selected(self, files: list[str]) -> str:
        return self._nothing_selected(len(files), [day_of(f) for f in files], "day files")

    def _nothing_selected(self, read: int, seen, what: str = "documents") -> str:
        bodies = sorted({b for b, _, _ in seen if b}) or ["(no body field)"]
        dates = sorted(d for _, d, _ in seen if d)
        span = f"{dates[0]} to {dates[-1]}" if dates else "(no date field)"
        languages = sorted({lang for _, _, lang in seen if lang}) or ["(no language field)"]
        return (f"{self.source}: the selection ({self.describe()}) keeps none of its {read:,} {what}; it has "
                f"bodies {', '.join(bodies)}, dates {span}, languages {', '.join(languages)}: widen the selection.")

    def _rows(self, batch_size: int):
        """(split or None, text, id, body, date, language, speakers) of every document read, before selection."""
        files = self.files()
        if files is not None and is_xml_file(files[0]):
            kept = self.day_files(files)
            if not kept:  # nothing selected: said by `selected`, with what the corpus has; no empty cache is made
                return
            rows = read_parsed(parsed(kept, locations.parsed_dir()), batch_size)
            for doc_id, text, body, date, language, speakers in itertools.islice(rows, self.max_documents):
                yield None, text, doc_id, body, date, language, speakers
            return
        yield from self._table_rows(batch_size)

    def _table_rows(self, batch_size: int):
        dataset = self.dataset()
        columns = list(self._guarded(lambda: dataset.column_names or next(iter(dataset)).keys()))
        for field, flag in ((self.text_field, "--text-field"), (self.split_field, "--split-field")):
            if field is not None and field not in columns:
                raise ValueError(f"{self.source}: no field {field!r}; the rows have {sorted(columns)}. Pass the right one with {flag}.")
        meta = {what: next((c for c in names if c in columns), None) for what, names in _METADATA_FIELDS.items()}
        needs = {"body": bool(self.bodies), "date": bool(self.since or self.before or self.validation_from),
                 "language": bool(self.languages)}
        for what, needed in needs.items():
            if needed and meta[what] is None:
                raise ValueError(f"{self.source}: selecting by {what} needs a {what} field "
                                 f"({' or '.join(_METADATA_FIELDS[what])}); the rows have {sorted(columns)}.")
        wanted = [c for c in dict.fromkeys((self.text_field, self.id_field, self.split_field, *meta.values()))
                  if c in columns]
        number = 0
        if self.max_documents is not None:
            dataset = dataset.take(self.max_documents)
        for batch in self._guarded(lambda: dataset.select_columns(wanted).iter(batch_size=batch_size)):
            ids, splits = batch.get(self.id_field), batch.get(self.split_field) if self.split_field else None
            bodies, dates, languages, speakers = (batch.get(meta[w]) if meta[w] else None
                                                  for w in ("body", "date", "language", "speakers"))
            for k, text in enumerate(batch[self.text_field]):
                if not isinstance(text, str):
                    raise ValueError(f"{self.source}: row {number + k} has a {type(text).__name__} in {self.text_field!r}, not text.")
                if splits is not None and splits[k] not in SPLITS:
                    raise ValueError(f"{self.source}: row {number + k} has {self.split_field}={splits[k]!r}; expected one of {SPLITS}.")
                date = str(dates[k])[:10] if dates is not None and dates[k] is not None else None
                if date is None and needs["date"]:
                    raise ValueError(f"{self.source}: row {number + k} has no {meta['date']}: a date selection or "
                                     "temporal split needs every document's date.")
                language = languages[k] if languages is not None else None
                if isinstance(language, dict):  # the Common Pile: metadata.language
                    language = language.get("language")
                yield (splits[k] if splits is not None else None, text, ids[k] if ids is not None else None,
                       body_of(bodies[k]) if bodies is not None else None, date, language,
                       speakers[k] if speakers is not None and isinstance(speakers[k], list) else None)
            number += len(batch[self.text_field])

    def documents(self, batch_size: int = 1000) -> Iterator[tuple[str, str]]:
        """(split, text) of every selected document."""
        return ((d.split, d.text) for d in self.selected(batch_size=batch_size))

    def _guarded(self, make):
        """Iterate `make()`, turning decoding errors into one message that names the source and the fix."""
        try:
            yield from make()
        except UnicodeDecodeError as error:
            where, error = self._first_undecodable() or (self.source, error)
            raise ValueError(f"{where}: not valid UTF-8 ({error.reason}: byte {error.object[error.start]:#04x}); "
                             "re-encode the file as UTF-8.") from None
        except Exception as error:  # pyarrow's JSON/Parquet errors name neither the file nor the fix
            if type(error).__module__.startswith(("pyarrow", "datasets")):
                raise ValueError(f"{self.source}: could not be read: {error}") from error
            raise

    def _first_undecodable(self) -> tuple[str, UnicodeDecodeError] | None:
        """("FILE, line N, byte B", the error) of the first line of a local file that is not UTF-8 (None: none)."""
        for file in self.files() or []:
            with open(file, "rb") as handle:
                for number, line in enumerate(handle, 1):
                    try:
                        line.decode("utf-8")
                    except UnicodeDecodeError as error:
                        return f"{file}, line {number}, byte {error.start + 1}", error
        return None

    def texts(self, split: str = "train") -> Iterator[str]:
        """The texts of one split."""
        return (text for doc_split, text in self.documents() if doc_split == split)


class _ShardWriter:
    """Appends token ids to `{split}_{k:05d}.bin` files of at most `shard_tokens` tokens, each with the checksum of
    its whole content, computed as it is written."""

    def __init__(self, folder: Path, split: str, dtype, shard_tokens: int):
        self.folder, self.split, self.dtype, self.shard_tokens = folder, split, dtype, shard_tokens
        self.shards: list[dict] = []
        self.file = self.digest = None

    def write(self, ids: np.ndarray):
        while len(ids):
            if self.file is None or self.shards[-1]["tokens"] >= self.shard_tokens:
                self._open_next()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            piece, ids = ids[:room], ids[room:]
            data = piece.astype(self.dtype).tobytes()
            self.file.write(data)
            self.digest.update(data)
            self.shards[-1]["tokens"] += len(piece)

    def _open_next(self):
        self.close()
        name = f"{self.split}_{len(self.shards):05d}.bin"
        self.file, self.digest = open(self.folder / name, "wb"), xxhash.xxh3_128()
        self.shards.append({"file": name, "tokens": 0})

    def close(self):
        if self.file is not None:
            self.file.close()
            self.shards[-1][CHECKSUM] = self.digest.hexdigest()
            self.file = None


def selection_text(index: dict) -> str:
    """What selection and deduplication took out of a prepared corpus, in a line or two ("" when nothing)."""
    counts = index.get("selection") or {}
    lines = []
    if counts.get("read", 0) != counts.get("selected", 0):
        lines.append(f"selection kept {counts['selected']:,} of {counts['read']:,} documents read")
    removed = counts.get("removed") or {}
    if any(sum(r.values()) for r in removed.values()):
        lines.append("duplicate paragraphs removed (exact + near; documents left with nothing new): " + ", ".join(
            f"{split} {r['exact']:,} + {r['near']:,} ({r['documents']:,} documents)" for split, r in removed.items()))
    return "\n".join(lines)


def token_dtype(vocab_size: int):
    """uint16 while every id fits (vocab <= 65,536), else uint32."""
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def batched(items, size: int):
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def read_index(data_dir) -> dict:
    file = Path(data_dir) / INDEX_FILE
    if not file.exists():
        raise FileNotFoundError(f"{data_dir} holds no prepared data ({INDEX_FILE}): run `hansard-hf prepare` first.")
    try:
        index = json.loads(file.read_text())
        index["splits"], index["key"], index["dtype"]  # noqa: B018 - the keys every reader needs
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{file} is damaged ({type(error).__name__}: {error}): prepare the data again "
                         f"(`hansard-hf prepare --rebuild --out={data_dir}` with the same corpus and tokenizer).") from None
    return index


def _reusable_index(folder: Path, key: dict, rebuild: bool, replace: bool) -> dict | None:
    """The index of `folder` when it already holds this data (`key`) and `rebuild` is off; None when it is empty,
    missing, or may be (re)written: older data of the same corpus and tokenizer, or anything with `replace`.
    Anything else in it is the user's: an error, and the folder is left alone."""
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return None
    try:
        index = json.loads((folder / INDEX_FILE).read_text())
    except (OSError, ValueError):  # no index, or not one of ours
        index = {}
    index = index if isinstance(index, dict) else {}
    made = index.get("key") if isinstance(index.get("key"), dict) else {}
    same_pair = (made.get("tokenizer"), made.get("corpus")) == (key["tokenizer"], key["corpus"])
    if index.get("key") == key and not rebuild:
        logger.info("Reusing the prepared data in %s.", folder)
        return index
    if not same_pair and not replace:
        what = "data prepared from another corpus or tokenizer" if index else "files that are not prepared data"
        raise FileExistsError(f"{folder} holds {what}: prepare into another folder (--out), or pass --replace "
                              "to delete it and prepare there.")
    return None


def prepare(corpus: Corpus, tokenizer_dir, data_dir, batch_documents: int = 2048, shard_tokens: int = 100_000_000,
            rebuild: bool = False, replace: bool = False) -> dict:
    """Tokenize every split of `corpus` into `data_dir` and return its index. A folder prepared from the same corpus
    with the same tokenizer is reused (rebuilt if `rebuild` or made by an older format). Any other non-empty folder
    is left alone with an error, unless `replace` says to delete it and prepare there."""
    key = {"format": FORMAT_VERSION, "tokenizer": tokenizer_hash(tokenizer_dir), "corpus": corpus.identity()}
    reusable = _reusable_index(Path(data_dir), key, rebuild, replace)
    if reusable is not None:
        return reusable
    tokenizer = load_tokenizer(tokenizer_dir)
    encode, bos = bulk_encoder(tokenizer), tokenizer.bos_token_id
    dtype = token_dtype(len(tokenizer))
    counts = {split: {"documents": 0, "bytes": 0} for split in SPLITS}
    with atomic_directory(data_dir, overwrite=True) as tmp:  # ours, or the user said replace
        writers = {split: _ShardWriter(tmp, split, dtype, shard_tokens) for split in SPLITS}
        progress = tqdm(desc=f"tokenizing {corpus.source}", unit=" docs")

        def write(batch, encoded):
            by_split: dict[str, list[list[int]]] = {}
            for (split, text), ids in zip(batch, encoded):
                by_split.setdefault(split, []).append(ids)
                counts[split]["documents"] += 1
                counts[split]["bytes"] += len(text.encode("utf-8"))
            for split, documents in by_split.items():  # one numpy conversion per split: BOS, doc, BOS, doc, ...
                total = sum(len(ids) + 1 for ids in documents)
                stream = itertools.chain.from_iterable(itertools.chain((bos,), ids) for ids in documents)
                writers[split].write(np.fromiter(stream, dtype=dtype, count=total))
            progress.update(len(batch))

        # encode batch k in a worker thread (the encoder releases the GIL) while batch k+1 is read
        selection = {}
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            documents = ((d.split, d.text) for d in corpus.selected(selection))
            for batch in batched(documents, batch_documents):
                future = pool.submit(encode, [text for _, text in batch])
                if pending is not None:
                    write(pending[0], pending[1].result())
                pending = (batch, future)
            if pending is not None:
                write(pending[0], pending[1].result())
        progress.close()
        for writer in writers.values():
            writer.close()
        if sum(c["documents"] for c in counts.values()) == 0:
            raise ValueError(f"{corpus.source}: the corpus is empty.")
        splits = {
            split: {**counts[split], "tokens": sum(s["tokens"] for s in writers[split].shards),
                    "shards": writers[split].shards}
            for split in SPLITS
        }
        index = {"key": key, "dtype": np.dtype(dtype).name, "vocab_size": len(tokenizer), "bos_token_id": bos,
                 "tokenizer_dir": str(tokenizer_dir), "splits": splits, "selection": selection}
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2))
    return index


class TokenRows(torch.utils.data.Dataset):
    """Rows of `max_seq_len + 1` consecutive tokens of a prepared split, served as `input_ids` (the first
    max_seq_len) and `shift_labels` (the last max_seq_len). Rows may start mid-document, as in nanochat."""

    def __init__(self, data_dir, split: str, max_seq_len: int, tokenizer_dir=None):
        index = read_index(data_dir)
        if tokenizer_dir is not None and index["key"]["tokenizer"] != tokenizer_hash(tokenizer_dir):
            raise ValueError(f"{data_dir} was prepared with another tokenizer than {tokenizer_dir}: run prepare again.")
        if split not in index["splits"]:
            raise ValueError(f"{data_dir} has no split {split!r}; it has {sorted(index['splits'])}.")
        shards = [s for s in index["splits"][split]["shards"] if s["tokens"]]
        itemsize = np.dtype(index["dtype"]).itemsize
        again = (f"prepare it again (`hansard-hf prepare --rebuild --out={data_dir}` with the same corpus and "
                 "tokenizer)")
        for shard in shards:  # a truncated, flipped or foreign shard would silently train on less or other data
            file = Path(data_dir) / shard["file"]
            size = file.stat().st_size if file.exists() else None
            if size != shard["tokens"] * itemsize:
                found = "is missing" if size is None else f"has {size:,} bytes"
                raise ValueError(f"{file} {found}; {INDEX_FILE} says {shard['tokens']:,} tokens "
                                 f"({shard['tokens'] * itemsize:,} bytes): the data folder is damaged, {again}.")
            if CHECKSUM not in shard:
                raise ValueError(f"{data_dir} was prepared by an older hansard-hf, without checksums: {again}.")
            if checksum(file) != shard[CHECKSUM]:
                raise ValueError(f"{file} changed after it was written (its checksum is not {INDEX_FILE}'s): the data "
                                 f"folder is damaged, {again}.")
        self.vocab_size = index["vocab_size"]
        self.arrays = [np.memmap(Path(data_dir) / s["file"], dtype=index["dtype"], mode="r") for s in shards]
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])
        self.row = max_seq_len + 1
        self.tokens = int(self.starts[-1])
        if self.tokens < self.row:
            raise ValueError(
                f"{data_dir}: the {split} split has {self.tokens} tokens, fewer than one row of max_seq_len + 1 = "
                f"{self.row}: use more data or a shorter max_seq_len."
            )

    def __len__(self) -> int:
        return self.tokens // self.row

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start, end = index * self.row, (index + 1) * self.row
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces = []
        while start < end:
            local = start - self.starts[first]
            piece = self.arrays[first][local : local + end - start]
            pieces.append(piece)
            start += len(piece)
            first += 1
        row = torch.from_numpy(np.concatenate(pieces).astype(np.int64))
        return {"input_ids": row[:-1], "shift_labels": row[1:]}

"""ParlParse / TheyWorkForYou `scrapedxml` day files -> debate sections, in the Common Pile's text layout.

One document per debate section (the speeches under one major and minor heading), not per day file as the Common
Pile has it: a day mixes unrelated debates (a BOS between them is what the model should see), a section is the unit
the Hansard splits and benchmarks use (`hansard_debates.jsonl`), and a few thousand words fit a context window. The
text is the heading lines, then `Speaker Name: speech` turns (the name on a turn's first paragraph), one paragraph
per block, blocks separated by blank lines; divisions, tables and member lists are skipped. Only the latest re-scrape
of a day is read (`debates2009-10-26b.xml` over `...a.xml`): the others repeat it.
"""

import gzip
import hashlib
import html.entities
import itertools
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from .files import CHECKSUM, atomic_directory, checksum

XML_SUFFIXES = (".xml", ".xml.gz")
ROOT_TAG = "publicwhip"
HEADINGS = {"major-heading", "oral-heading", "minor-heading"}
TURNS = {"speech", "ques", "reply"}
SKIPPED = {"division", "divisioncount", "table", "mplist", "msplist", "mpname", "committee", "bill"}

# body of a day file, by the start of its name, else by its folder (ParlParse's names; the Common Pile's folders)
BODY_BY_PREFIX = {"debates": "commons", "westminster": "westminster-hall", "answers": "commons-written-answers",
                  "ministerial": "commons-written-statements", "standing": "committees", "daylord": "lords",
                  "lordswrans": "lords-written-answers", "lordswms": "lords-written-statements", "ni": "ni-assembly",
                  "sp": "scottish-parliament", "spwa": "scottish-parliament-written-answers"}
BODY_BY_FOLDER = {"debates": "commons", "westminhall": "westminster-hall", "wrans": "commons-written-answers",
                  "wms": "commons-written-statements", "standing": "committees", "lordspages": "lords",
                  "lordswrans": "lords-written-answers", "lordswms": "lords-written-statements", "ni": "ni-assembly",
                  "sp": "scottish-parliament", "sp-written": "scottish-parliament-written-answers", "senedd": "senedd",
                  "london-mayors-questions": "london-mayors-questions"}
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DAY_STEM = re.compile(r"^(?P<day>.*\d{4}-\d{2}-\d{2})(?P<letter>[a-z]?)$")
_DOCTYPE = re.compile(r"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", re.DOTALL)
_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?encoding=[\"']([\w.-]+)[\"'][^>]*\?>")
_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_NO_SPACE_BEFORE, _NO_SPACE_AFTER = set(",.;:!?)]'’”—-"), set("([‘“—-")
PARSED_COLUMNS = ("id", "text", "body", "date", "language", "speakers")
PARSED_MANIFEST = "parsed.json"
PARSED_FORMAT = 2  # bump when what `sections` yields for the same file changes
FILES_PER_SHARD = 64
_XML_ENTITIES = {"amp", "lt", "gt", "quot", "apos"}


def is_xml_file(path) -> bool:
    return str(path).endswith(XML_SUFFIXES)


def _stem(path: Path) -> str:
    return path.name[: -len(".xml.gz")] if path.name.endswith(".gz") else path.name[: -len(".xml")]


def latest_versions(files) -> list[Path]:
    """The last re-scrape of every day (`...c.xml` over `...b.xml` and `...a.xml`), in name order."""
    latest: dict[tuple, tuple[str, Path]] = {}
    for file in map(Path, files):
        match = DAY_STEM.match(_stem(file))
        if match is None:
            raise ValueError(f"{file}: no date (YYYY-MM-DD) in its name; ParlParse names day files like "
                             "debates2021-03-12a.xml: rename it, or move it out of the corpus folder.")
        key = (file.parent, match["day"])
        if key not in latest or match["letter"] >= latest[key][0]:
            latest[key] = (match["letter"], file)
    return sorted((file for _, file in latest.values()), key=str)


def body_of_file(file) -> str | None:
    """The body whose record a ParlParse file is, by the start of its name or else its folders; None for the other
    records ParlParse keeps beside Hansard (the register of interests, SP motions and questions, ...)."""
    file = Path(file)
    prefix = re.match(r"[a-z-]*", _stem(file))[0]
    return BODY_BY_PREFIX.get(prefix) or next((BODY_BY_FOLDER[f] for f in file.parent.parts[::-1]
                                               if f in BODY_BY_FOLDER), None)


def hansard_files(files) -> tuple[list, list]:
    """(the files of Hansard bodies, the others) among ParlParse files."""
    bodies = [body_of_file(f) for f in files]
    return [f for f, b in zip(files, bodies) if b], [f for f, b in zip(files, bodies) if not b]


def day_of(file) -> tuple[str, str, str]:
    """(body, date, language) of a day file of a Hansard body, from its name and folders alone (no parsing)."""
    file = Path(file)
    body = body_of_file(file)
    language = "cy" if body == "senedd" and "cy" in file.parent.parts[-2:] else "en"
    return body, DATE.findall(_stem(file))[-1], language


def check_day_file(file) -> None:
    """The cheap checks of a day file, before any document is read: a body and date in its name, not empty, and a
    ParlParse root element in its first 64 kB (a full parse happens when the documents are read)."""
    file = Path(file)
    day_of(file)
    root = re.search(rb"<([A-Za-z][\w.-]*)", _day_bytes(file, 65536))
    _check_root(file, root[1].decode() if root else None)


def _day_bytes(file: Path, size: int = -1) -> bytes:
    """The first `size` bytes of a day file (all with -1), gunzipped; unreadable or empty is an error naming it."""
    try:
        with (gzip.open(file) if file.name.endswith(".gz") else open(file, "rb")) as handle:
            data = handle.read(size)
    except (OSError, EOFError) as error:
        raise ValueError(f"{file}: could not be read ({error}): fetch it again.") from None
    if not data.strip():
        raise ValueError(f"{file}: empty (no XML in it): a failed download? Fetch it again or delete it.")
    return data


def _check_root(file: Path, tag: str | None) -> None:
    if tag != ROOT_TAG:
        found = f"<{tag}>" if tag else "no XML element"
        raise ValueError(f"{file}: not a ParlParse day file ({found} where <{ROOT_TAG}> should start it): move it "
                         "out of the corpus folder.")


def parsed_folder(files, root) -> Path:
    """Where `parsed` keeps the sections of these day files (complete when it holds PARSED_MANIFEST)."""
    stats = [(str(f), stat.st_size, stat.st_mtime_ns) for f, stat in ((f, os.stat(f)) for f in files)]
    return Path(root) / hashlib.sha1(json.dumps([PARSED_FORMAT, stats]).encode()).hexdigest()[:16]


def parsed(files, root) -> Path:
    """The sections of the day files `files`, parsed once (in parallel processes) into Parquet shards with checksums in
    root/<fingerprint of the files' paths, sizes and times>; later reads of the same files read the shards, far
    faster than XML. A malformed file is an error naming it (the first in file order), and nothing is kept."""
    folder = parsed_folder(files, root)
    if (folder / PARSED_MANIFEST).exists():
        return folder
    chunks = [[Path(f) for f in files[k : k + FILES_PER_SHARD]] for k in range(0, len(files), FILES_PER_SHARD)]
    with atomic_directory(folder, overwrite=True) as tmp:
        jobs = [(chunk, tmp / f"sections_{k:05d}.parquet") for k, chunk in enumerate(chunks)]
        if len(jobs) > 1 and (os.cpu_count() or 1) > 1:
            # spawned, not forked: the caller may hold threads (torch, pyarrow) that a fork would copy mid-flight
            with ProcessPoolExecutor(min(os.cpu_count(), len(jobs), 32), mp_context=get_context("spawn")) as pool:
                shards = list(pool.map(_write_shard, jobs))
        else:
            shards = [_write_shard(job) for job in jobs]
        (tmp / PARSED_MANIFEST).write_text(json.dumps({"files": len(files), "shards": shards}))
    return folder


def _write_shard(job) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files, path = job
    rows = [s for file in files for s in sections(file)]
    pq.write_table(pa.table({column: [r[column] for r in rows] for column in PARSED_COLUMNS}), path)
    return {"file": path.name, "sections": len(rows), CHECKSUM: checksum(path)}


def read_parsed(folder, batch_size: int = 1000) -> Iterator[tuple]:
    """(id, text, body, date, language, speakers) of every section in a `parsed` folder, in file order; a changed
    shard is an error that says to delete the folder."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    for shard in json.loads((folder / PARSED_MANIFEST).read_text())["shards"]:
        path = folder / shard["file"]
        if not path.exists() or checksum(path) != shard[CHECKSUM]:
            raise ValueError(f"{path} changed after it was written (its checksum is not {PARSED_MANIFEST}'s): delete "
                             f"{folder} and read the corpus again.")
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=list(PARSED_COLUMNS)):
            yield from zip(*batch.to_pydict().values())


def read_xml(file) -> ET.Element:
    """The parsed root of a day file (gzipped or not), with HTML entities resolved; one clear error otherwise."""
    file = Path(file)
    data = _day_bytes(file)
    declared = _DECLARATION.match(data)
    try:
        text = data.decode(declared[1].decode() if declared else "utf-8")
    except (UnicodeDecodeError, LookupError) as error:
        raise ValueError(f"{file}: not valid {declared[1].decode() if declared else 'UTF-8'} ({error}): fetch it "
                         "again.") from None
    text = _ENTITY.sub(_resolve_entity, _DOCTYPE.sub("", text[declared.end():] if declared else text, count=1))
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        line, column = error.position
        raise ValueError(f"{file}: malformed XML at line {line}, column {column} ({str(error).split(':')[0]}): "
                         "fetch it again, or delete it.") from None
    _check_root(file, root.tag)
    return root


def _resolve_entity(match) -> str:
    name = match[1]
    if name in _XML_ENTITIES:
        return match[0]
    char = html.entities.html5.get(name + ";")
    return char.replace("&", "&amp;").replace("<", "&lt;") if char else f"&amp;{name};"


def _text(element) -> str:
    """The element's words, skipped elements left out, whitespace collapsed."""
    parts = [element.text or ""]
    for child in element:
        if child.tag not in SKIPPED:
            parts.append(_text(child))
        parts.append(child.tail or "")
    return " ".join(_joined(parts).split())


def _joined(parts) -> str:
    """Text pieces split by inline markup, a space between two words (`[Interruption.]</i>I` -> `... I`), none
    before punctuation (`Report</i>, column`)."""
    text = ""
    for part in filter(None, parts):
        if text and not text[-1].isspace() and text[-1] not in _NO_SPACE_AFTER and not part[0].isspace() \
                and part[0] not in _NO_SPACE_BEFORE:
            text += " "
        text += part
    return text


def _paragraphs(turn) -> list[str]:
    paragraphs = [_text(p) for p in turn if p.tag == "p"] or [_text(turn)]
    return [p for p in paragraphs if p]


def turns(file) -> Iterator[dict]:
    """The turns of one day file, in order: kind (`speech`, or a written question's `ques` and its `reply`),
    speaker, paragraphs, the section they are in (its id, `<file stem>#s<heading number>`, and its major and minor
    heading), a speech's type (TheyWorkForYou's `Start Question`, `Start Answer`, ... where marked) and whether it
    is an oral question (`oral-qnum`); empty turns left out."""
    stem, number, major, minor = _stem(Path(file)), 0, "", ""
    for element in read_xml(file):
        if element.tag in HEADINGS:
            number += 1
            if element.tag == "minor-heading":
                minor = _text(element)
            else:
                major, minor = _text(element), ""
        elif element.tag in TURNS and (paragraphs := _paragraphs(element)):
            yield {"section": f"{stem}#s{number}", "major": major, "minor": minor, "kind": element.tag,
                   "speaker": element.get("speakername", "").strip().rstrip(":"), "paragraphs": paragraphs,
                   "type": element.get("type", ""), "oral_question": element.get("oral-qnum") is not None}


def sections(file) -> Iterator[dict]:
    """The debate sections of one day file: id (`<file stem>#s<heading number>`), text, title, date, body, language,
    speakers, n_speeches, n_words (of the turns) and the file, in the order of the day."""
    file = Path(file)
    body, date, language = day_of(file)
    for section_id, section in itertools.groupby(turns(file), key=lambda turn: turn["section"]):
        section = list(section)
        headings = [h for h in (section[0]["major"], section[0]["minor"]) if h]
        blocks = [f"{t['speaker']}: {p}" if t["speaker"] and i == 0 else p
                  for t in section for i, p in enumerate(t["paragraphs"])]
        text = "\n\n".join(headings + blocks)
        yield {"id": section_id, "text": text, "title": " — ".join(headings), "date": date, "body": body,
               "language": language, "speakers": sorted({t["speaker"] for t in section if t["speaker"]}),
               "n_speeches": len(section), "n_words": len(text.split()), "file": str(file)}

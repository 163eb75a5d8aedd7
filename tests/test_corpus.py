"""The real Hansard corpus: ParlParse XML read as researchers get it (agreeing with the shared JSONL derived from the
same files), selection by body, date and language, a temporal split, duplicate paragraphs removed across splits,
`hansard-hf corpus`, and one clear error for each kind of bad input."""

import gzip
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from hansard_hf.data import Corpus, prepare, read_index
from hansard_hf.parlparse import latest_versions, sections
from hansard_hf.selection import MIN_WORDS, ParagraphFilter, body_of, bodies_named
from hansard_hf.tokenization import save_tokenizer, train_tokenizer
from conftest import cli
from corpus_helpers import documents, write_jsonl

HANSARD = Path(__file__).resolve().parents[2] / "shared" / "data" / "hansard"
needs_shared = pytest.mark.skipif(not (HANSARD / "raw").exists(), reason="../shared/data/hansard is not here")

DAY = """<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE publicwhip [ <!ENTITY pound "&#163;"> ]>
<publicwhip scrapeversion="{letter}" latest="yes">
<major-heading id="uk.org.publicwhip/debate/{date}{letter}.1.0" nospeaker="true">BUSINESS OF THE HOUSE</major-heading>
<speech id="a.1" nospeaker="true"><p>Ordered, That the sitting be suspended.</p></speech>
<minor-heading id="a.2">Schools &mdash; Funding</minor-heading>
<speech id="a.3" speakername="Jane Smith" person_id="uk.org.publicwhip/person/1">
  <p>What <i>plans</i> the Secretary of State has for schools costing &pound;{money} million.</p>
  <p>A second paragraph of the same speech.<table><tr><td>1</td><td>2</td></tr></table></p></speech>
<division id="a.4"><divisioncount ayes="300" noes="200"/><mplist vote="aye"><mpname>Someone Else</mpname></mplist></division>
<speech id="a.5" speakername="Hon. Members:" nospeaker="true"><p>Hear, hear.</p></speech>
<speech id="a.6" speakername="John Brown"><p>{reply}</p></speech>
</publicwhip>
"""


def day_file(folder: Path, name: str, letter: str = "a", money: int = 5, reply: str = "Question put and agreed to.",
             zipped: bool = False) -> Path:
    """A small ParlParse day file: two sections (one procedural), a speech of two paragraphs with a table, a
    division, an "Hon. Members" interjection, in ISO-8859-1 with a DTD entity and an HTML entity it does not declare."""
    date = (re.findall(r"\d{4}-\d{2}-\d{2}", name) or ["2020-01-01"])[-1]
    data = DAY.format(letter=letter, date=date, money=money, reply=reply).encode("iso-8859-1")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name + (".xml.gz" if zipped else ".xml"))
    path.write_bytes(gzip.compress(data) if zipped else data)
    return path


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Parsed XML (and anything else kept in $HANSARD_HF_HOME) goes to this test's own folder."""
    monkeypatch.setenv("HANSARD_HF_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_a_day_file_reads_into_sections_in_the_common_pile_layout(tmp_path):
    path = day_file(tmp_path / "debates", "debates2020-03-02b", letter="b", zipped=True)
    first, second = sections(path)
    assert first == {**first, "id": "debates2020-03-02b#s1", "title": "BUSINESS OF THE HOUSE",
                     "text": "BUSINESS OF THE HOUSE\n\nOrdered, That the sitting be suspended.", "date": "2020-03-02",
                     "body": "commons", "language": "en", "speakers": [], "n_speeches": 1}
    assert second["text"] == ("BUSINESS OF THE HOUSE\n\nSchools — Funding\n\n"
                              "Jane Smith: What plans the Secretary of State has for schools costing £5 million.\n\n"
                              "A second paragraph of the same speech.\n\nHon. Members: Hear, hear.\n\n"
                              "John Brown: Question put and agreed to.")
    assert second["title"] == "BUSINESS OF THE HOUSE — Schools — Funding" and second["n_speeches"] == 3
    assert second["speakers"] == ["Hon. Members", "Jane Smith", "John Brown"]
    assert second["n_words"] == len(second["text"].split())
    assert "300" not in second["text"] and "Someone" not in second["text"]  # the division and table are skipped


def test_only_the_latest_rescrape_of_a_day_is_read(tmp_path):
    folder = tmp_path / "scrapedxml" / "debates"
    for letter, money in (("a", 1), ("c", 3), ("b", 2)):
        day_file(folder, f"debates2020-03-02{letter}", letter=letter, money=money)
    day_file(folder, "debates2020-03-03a", money=9)
    (folder / "changedates.txt").write_text("debates2020-03-02c.xml 1583150000\n")
    corpus = Corpus(str(tmp_path / "scrapedxml"))
    assert [Path(f).name for f in corpus.files()] == ["debates2020-03-02c.xml", "debates2020-03-03a.xml"]
    texts = [text for _, text in corpus.documents()]
    assert sum("£3 million" in t for t in texts) == 1 and not any("£1 million" in t or "£2 million" in t for t in texts)
    assert latest_versions([folder / "debates2020-03-02a.xml", folder / "debates2020-03-02b.xml"]) == \
        [folder / "debates2020-03-02b.xml"]
    write_jsonl(tmp_path / "scrapedxml" / "notes.jsonl", documents(2))  # anything else beside them is not ignored
    with pytest.raises(ValueError, match=r"mixes or lacks formats \(\['json', 'xml'\]\)"):
        corpus.files()


@needs_shared
def test_the_shared_xml_reads_as_the_shared_jsonl_derived_from_it():
    """2,380 sections and 11,991 speeches, ids, dates, bodies and speakers as the converter's; texts the same but for
    spacing at inline markup (141 sections); words within 0.001%."""
    theirs = {r["id"]: r for r in map(json.loads, (HANSARD / "hansard_debates.jsonl").open())
              if r["source_file"].endswith(".xml.gz")}
    corpus = Corpus(str(HANSARD / "raw"))
    ours = {s["id"]: s for f in corpus.files() for s in sections(f)}
    assert len(ours) == len(theirs) == 2380 and set(ours) == set(theirs)
    assert sum(s["n_speeches"] for s in ours.values()) == sum(r["n_speeches"] for r in theirs.values()) == 11991
    for key, row in theirs.items():
        mine = ours[key]
        assert (mine["date"], mine["body"], mine["n_speeches"]) == (row["date"], body_of(row["type"]), row["n_speeches"])
        assert mine["speakers"] == [name.rstrip(":") for name in row["speakers"]]  # their "Hon. Members:" keeps a colon
        assert mine["title"] == (row["title"] or "")
        # their converter writes "Hon. Members:: Hear, hear." and spaces inline markup unevenly ("[ Interruption. ]")
        assert "".join(mine["text"].split()).replace("::", ":") == "".join(row["text"].split()).replace("::", ":")
    spaced = sum(ours[k]["text"] != theirs[k]["text"] for k in theirs)
    words, their_words = sum(s["n_words"] for s in ours.values()), sum(r["n_words"] for r in theirs.values())
    assert spaced < 150 and abs(words - their_words) / their_words < 1e-5, (spaced, words, their_words)
    split = Counter(s for s, _ in corpus.documents())  # the id hash split is the JSONL's split
    assert split == Counter(r["split"] for r in theirs.values())


def test_bodies_name_groups_aliases_and_say_did_you_mean():
    assert bodies_named("commons,lords") == ("commons", "lords")
    assert bodies_named(["uk-hansard-westminister-hall", "public-bill-committee"]) == ("westminster-hall", "committees")
    assert set(bodies_named("devolved")) == {"scottish-parliament", "scottish-parliament-written-answers",
                                             "ni-assembly", "senedd"}
    assert body_of("uk-hansard-senedd-cy") == "senedd" and body_of("commons-debates") == "commons"
    with pytest.raises(ValueError, match="no body 'comons' \\(did you mean 'commons'\\?\\)"):
        Corpus("x.jsonl", bodies="comons")


def common_pile_rows() -> list[dict]:
    """Rows as the Common Pile's uk_hansard has them: source, created, metadata.language."""
    rows = []
    for k, (source, created, language) in enumerate([
            ("uk-hansard-commons-debates", "2009-10-26", "en"), ("uk-hansard-lords-debates", "2015-01-05", "en"),
            ("uk-hansard-senedd-cy", "2019-05-01", "cy"), ("uk-hansard-senedd-en", "2019-05-01", "en"),
            ("uk-hansard-commons-debates", "2020-06-15", "en"), ("uk-hansard-written-answers", "2021-02-01", "en")]):
        rows.append({"id": f"doc{k}", "text": f"Document {k} of {source}, sitting of {created}.", "created": created,
                     "source": source, "added": "2024-01-01", "metadata": {"license": "OPL", "language": language,
                                                                          "year": created[:4]}})
    return rows


def test_selection_by_body_date_and_language_reads_common_pile_fields(tmp_path):
    path = str(write_jsonl(tmp_path / "cp.jsonl", common_pile_rows()))

    def kept(**selection):
        return [d.text.split(" of ")[0] for d in Corpus(path, **selection).selected()]

    assert kept(bodies="commons") == ["Document 0", "Document 4"]
    assert kept(bodies="written") == ["Document 5"]
    assert kept(since="2015", before="2020") == ["Document 1", "Document 2", "Document 3"]
    assert kept(languages="cy") == ["Document 2"]
    assert kept(bodies="senedd", languages="en") == ["Document 3"]
    with pytest.raises(ValueError, match=r"keeps none of its 6 documents; it has bodies commons, "
                                         r"commons-written-answers, lords, senedd, dates 2009-10-26 to 2021-02-01"):
        kept(since="2030")


def test_a_temporal_split_follows_the_dates(tmp_path):
    path = str(write_jsonl(tmp_path / "cp.jsonl", common_pile_rows()))
    corpus = Corpus(path, validation_from="2020", test_from="2021")
    assert [(d.split, d.date) for d in corpus.selected()] == [
        ("train", "2009-10-26"), ("train", "2015-01-05"), ("train", "2019-05-01"), ("train", "2019-05-01"),
        ("validation", "2020-06-15"), ("test", "2021-02-01")]
    with pytest.raises(ValueError, match="needs both validation_from and test_from"):
        Corpus(path, validation_from="2020")
    with pytest.raises(ValueError, match="must come before"):
        Corpus(path, validation_from="2021", test_from="2020")
    with pytest.raises(ValueError, match="selecting by date needs a date field"):
        list(Corpus(str(write_jsonl(tmp_path / "plain.jsonl", documents(3))), since="2020").selected())


def test_duplicate_paragraphs_are_removed_once_across_splits():
    filter_ = ParagraphFilter()
    long = "Question put and agreed to, and the Bill was read a Second time."
    assert filter_(f"HEADING\n\n{long}\n\nMr Smith: A new point about schools in Kent.") == \
        f"HEADING\n\n{long}\n\nMr Smith: A new point about schools in Kent."
    second = filter_(f"HEADING\n\n{long}\n\nquestion put AND agreed to and the bill was read a second time!!\n\n"
                     "Mr Jones: Another new point about roads in Devon.")
    assert second == "HEADING\n\nMr Jones: Another new point about roads in Devon."  # short heading kept
    assert (filter_.exact, filter_.near) == (1, 1)
    assert filter_(f"HEADING\n\n{long}") == ""  # nothing new: the document is dropped
    assert filter_("Order.\n\nOrder.") == "Order.\n\nOrder."  # under MIN_WORDS words: kept
    assert MIN_WORDS == 5


def test_dedup_leaves_no_paragraph_in_two_splits(tmp_path):
    rows = documents(400, seed=4)  # stock phrases repeat across debates; copy some debates whole
    rows += [{**row, "id": f"copy-{k}"} for k, row in enumerate(rows[:40])]
    path = str(write_jsonl(tmp_path / "c.jsonl", rows))
    counts = {}
    docs = list(Corpus(path, dedup=True).selected(counts))
    where = {}
    for d in docs:
        for paragraph in d.text.split("\n\n"):
            if len(paragraph.split()) >= MIN_WORDS:
                key = " ".join(re.findall(r"\w+", paragraph.lower()))
                assert key not in where, f"{paragraph!r} is in {where[key]} and {d.split}"
                where[key] = d.split
    removed = counts["removed"]
    assert sum(r["exact"] for r in removed.values()) >= 40 * 6 and sum(r["documents"] for r in removed.values()) >= 40
    assert counts["kept"] == len(docs) == 440 - sum(r["documents"] for r in removed.values())


def test_selection_is_part_of_the_fingerprint_and_unselected_corpora_keep_theirs(tmp_path):
    from hansard_hf import locations

    plain = Corpus("hansard.jsonl")
    assert plain.identity() == {"source": "hansard.jsonl", "text_field": "text", "id_field": "id", "split_field": None,
                                "max_documents": None}  # as before selection existed: no folder is orphaned
    folders = {locations.tokenizer_dir(c) for c in (plain, Corpus("hansard.jsonl", bodies="commons"),
                                                    Corpus("hansard.jsonl", since="2010"),
                                                    Corpus("hansard.jsonl", validation_from="2020", test_from="2021"),
                                                    Corpus("hansard.jsonl", dedup=True))}
    assert len(folders) == 5


def test_prepare_counts_what_selection_and_dedup_removed(tmp_path):
    folder = tmp_path / "xml"
    for name, money in (("debates2019-06-03a", 1), ("debates2020-06-01a", 2), ("debates2021-06-07a", 3)):
        day_file(folder / "debates", name, money=money)
    day_file(folder / "lordspages", "daylord2020-06-02a", money=4)
    save_tokenizer(train_tokenizer([d["text"] for d in documents(50)], vocab_size=400), tmp_path / "tok")
    corpus = Corpus(str(folder), bodies="commons", validation_from="2020", test_from="2021", dedup=True)
    index = prepare(corpus, tmp_path / "tok", tmp_path / "data")
    assert {s: v["documents"] for s, v in index["splits"].items()} == {"train": 2, "validation": 1, "test": 1}
    selection = read_index(tmp_path / "data")["selection"]
    assert selection["read"] == 6 and selection["kept"] == 4
    # each later day: "Ordered, ..." (its section dropped), "A second paragraph ...", "John Brown: Question put ..."
    assert selection["removed"]["validation"] == selection["removed"]["test"] == {"exact": 3, "near": 0, "documents": 1}


def hansard_hf(*arguments, cwd, home) -> subprocess.CompletedProcess:
    return cli(*arguments, cwd=cwd, HANSARD_HF_HOME=home)


@pytest.mark.parametrize("fault, expected", [
    ("malformed", r"debates2020-06-02a.xml: malformed XML at line 6, column \d+ \(mismatched tag\)"),
    ("empty", r"debates2020-06-02a.xml: empty \(no XML in it\)"),
    ("schema", r"debates2020-06-02a.xml: not a ParlParse day file \(<rss> where <publicwhip> should start it\)"),
    ("undated", r"debates-latest.xml: no date \(YYYY-MM-DD\) in its name"),
    ("no dates", r"keeps none of its 2 day files; it has bodies commons, dates 2020-06-01 to 2020-06-02"),
    ("no body", r"no body 'lordz' \(did you mean 'lords'\?\)"),
])
def test_bad_xml_input_is_one_line_before_any_work_and_leaves_nothing(tmp_path, fault, expected):
    folder = tmp_path / "xml" / "debates"
    day_file(folder, "debates2020-06-01a")
    bad = folder / "debates2020-06-02a.xml"
    bad.write_text({"malformed": DAY.format(letter="a", date="2020-06-02", money=1, reply="x")
                    .replace("</minor-heading>", "</minor>"),
                    "empty": "", "schema": '<?xml version="1.0"?>\n<rss><channel/></rss>\n'}.get(fault, "<publicwhip/>"))
    if fault == "undated":
        day_file(folder, "debates-latest")
    options = {"no dates": ["--since=2024"], "no body": ["--bodies=lordz"]}.get(fault, [])
    done = hansard_hf("prepare", f"--dataset={tmp_path / 'xml'}", *options, f"--out={tmp_path / 'data'}",
                      cwd=tmp_path, home=tmp_path / "home")
    errors = [line for line in done.stderr.splitlines() if line.startswith("hansard-hf prepare: error: ")]
    assert done.returncode == 1 and len(errors) == 1 and re.search(expected, errors[0]), done.stderr
    assert "Traceback" not in done.stderr and "training the Hansard tokenizer" not in done.stderr  # before any work
    assert not (tmp_path / "data").exists() and not [p for p in (tmp_path / "home").rglob("*") if p.is_file()]


def test_a_date_filter_selecting_nothing_in_a_table_fails_before_a_tokenizer_is_saved(tmp_path):
    path = write_jsonl(tmp_path / "cp.jsonl", common_pile_rows())
    done = hansard_hf("prepare", f"--dataset={path}", "--since=2030", f"--out={tmp_path / 'data'}", cwd=tmp_path,
                      home=tmp_path / "home")
    assert done.returncode == 1 and "keeps none of its 6 documents" in done.stderr, done.stderr
    assert not (tmp_path / "data").exists() and not list((tmp_path / "home").rglob("tokenizer.json"))


@needs_shared
def test_hansard_hf_corpus_reports_what_prepare_writes(tmp_path):
    selection = ["--bodies=westminster", "--validation-from=2020", "--test-from=2021", "--dedup"]
    raw = f"--dataset={HANSARD / 'raw'}"
    done = hansard_hf("corpus", raw, *selection, "--json", f"--png={tmp_path / 'years.png'}", cwd=tmp_path,
                      home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (tmp_path / "years.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(summary["by_body"]) <= set(bodies_named("westminster")) and "scottish-parliament" not in summary["by_body"]
    assert set(summary["by_decade"]) == {"2000s", "2010s", "2020s"}
    done = hansard_hf("prepare", raw, *selection, cwd=tmp_path, home=tmp_path / "home")
    assert done.returncode == 0 and "duplicate paragraphs removed" in done.stdout, done.stderr
    index = read_index(done.stdout.strip().splitlines()[-1].removeprefix("prepared data in "))
    for split, row in summary["by_split"].items():
        assert (row["documents"], row["tokens"]) == (index["splits"][split]["documents"], index["splits"][split]["tokens"])
    assert sum(r["tokens"] for r in summary["by_body"].values()) == sum(r["tokens"] for r in summary["by_split"].values())
    assert summary["duplicates"]["removed"] == index["selection"]["removed"]
    text = hansard_hf("corpus", raw, "--bodies=commons", cwd=tmp_path, home=tmp_path / "home")
    assert text.returncode == 0 and re.search(r"^commons\s+445\s", text.stdout, re.M), text.stdout + text.stderr
    assert "repeat earlier ones (kept: --dedup removes them)" in text.stdout and "By corpus size" in text.stdout
    assert "wrote " in text.stdout and list((tmp_path / "home" / "corpus").rglob("*.png"))


def test_many_day_files_are_parsed_in_parallel_and_the_first_bad_one_is_named(tmp_path):
    folder = tmp_path / "xml" / "westminhall"
    for day in range(1, 81):
        day_file(folder, f"westminster2021-{(day - 1) // 28 + 1:02d}-{(day - 1) % 28 + 1:02d}a", money=day)
    bad = sorted(folder.iterdir())[70]
    bad.write_text(bad.read_text(encoding="iso-8859-1").replace("</speech>", "", 1), encoding="iso-8859-1")
    (sorted(folder.iterdir())[75]).write_bytes(b"<publicwhip><p>&</p></publicwhip>")
    corpus = Corpus(str(tmp_path / "xml"))
    corpus.check()  # the cheap checks pass: each file starts as a day file
    with pytest.raises(ValueError, match=f"{bad.name}: malformed XML at line"):
        corpus.check(parse=True)


def test_xml_is_parsed_once_into_checked_parquet_and_again_when_a_file_changes(tmp_path, home):
    folder = tmp_path / "xml" / "debates"
    first = day_file(folder, "debates2020-06-01a", money=1)
    day_file(folder, "debates2020-06-02a", money=2)
    corpus = Corpus(str(tmp_path / "xml"))
    texts = [text for _, text in corpus.documents()]
    assert texts == [s["text"] for f in sorted(folder.iterdir()) for s in sections(f)]
    (shard,) = (home / "parsed").rglob("*.parquet")
    assert [text for _, text in corpus.documents()] == texts  # read from the shard
    first.write_bytes(first.read_bytes().replace(b"&pound;1 million", b"&pound;7 million"))  # a re-fetched day
    texts = [text for _, text in corpus.documents()]
    assert any("£7 million" in t for t in texts) and not any("£1 million" in t for t in texts)
    (shard,) = [s for s in (home / "parsed").rglob("*.parquet") if s.stat().st_mtime_ns > shard.stat().st_mtime_ns]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="changed after it was written .* delete"):
        list(corpus.documents())


def test_count_tokens_advises_on_the_selected_corpus(tmp_path):
    rows = [{**row, "text": row["text"] + " " + " ".join(documents(1, seed=k)[0]["text"] for k in range(3))}
            for row in common_pile_rows()]
    path = write_jsonl(tmp_path / "cp.jsonl", rows)
    counted = {}
    for selection in ([], ["--bodies=commons"]):
        done = hansard_hf("count-tokens", f"--dataset={path}", *selection, "--json", cwd=tmp_path, home=tmp_path / "home")
        assert done.returncode == 0, done.stderr
        counted[bool(selection)] = json.loads(done.stdout)["splits"]
    assert sum(s["documents"] for s in counted[False].values()) == 6
    assert sum(s["documents"] for s in counted[True].values()) == 2  # the two Commons debates


def test_xml_documents_keep_their_speakers(tmp_path):
    day_file(tmp_path / "xml" / "debates", "debates2020-06-01a")
    speakers = [d.speakers for d in Corpus(str(tmp_path / "xml")).selected()]
    assert speakers == [(), ("Hon. Members", "Jane Smith", "John Brown")]


def test_parlparse_records_that_are_not_debates_are_passed_over_and_said(tmp_path, caplog):
    root = tmp_path / "scrapedxml"
    day_file(root / "debates", "debates2020-01-06a")
    (root / "regmem").mkdir()
    (root / "regmem" / "regmem2020-01-06.xml").write_text("<publicwhip><regmem/></publicwhip>")
    (root / "regmem" / "index.xml").write_text("<publicwhip/>")  # no date in its name: not a day file, not ours
    corpus = Corpus(str(root))
    assert [Path(f).name for f in corpus.files()] == ["debates2020-01-06a.xml"]
    with caplog.at_level("WARNING"):
        corpus.check()
    assert "passed over 2 XML files that are not Hansard debates or answers (folders regmem)" in caplog.text
    with pytest.raises(ValueError, match="none of its 2 XML files is a Hansard body's record"):
        Corpus(str(root / "regmem")).files()

"""`hansard-hf qa`: written questions paired with their answers within a section, in order, as a chat dataset."""

import json
import re
from pathlib import Path

import pytest
from datasets import load_from_disk

from conftest import cli
from hansard_hf.data import Corpus
from hansard_hf.qa import COUNTS_FILE, build_qa, qa_rows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hansard"
HEAD = '<?xml version="1.0" encoding="ISO-8859-1"?>\n<publicwhip scrapeversion="a" latest="yes">\n'


def turn(tag: str, speaker: str, *paragraphs: str, **attributes) -> str:
    marks = "".join(f' {name.replace("_", "-")}="{value}"' for name, value in attributes.items())
    return f'<{tag} speakername="{speaker}"{marks}>' + "".join(f"<p>{p}</p>" for p in paragraphs) + f"</{tag}>\n"


def day_file(folder: Path, date: str, *elements: str, kind: str = "wrans/answers") -> Path:
    path = folder / f"{kind}{date}a.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEAD + "".join(elements) + "</publicwhip>\n", encoding="latin-1")
    return path


def heading(kind: str, title: str) -> str:
    return f'<{kind}-heading nospeaker="true">{title}</{kind}-heading>\n'


ASKED = "To ask the Secretary of State for the Home Department how many police officers there were in 2020."
ANSWERED = "There were 129,110 police officers in England and Wales on 31 March 2020."


@pytest.fixture
def wrans(tmp_path) -> Path:
    """Two days of written answers: a pair; two questions answered together; an answer with no question; a question
    with no answer; a pair repeated word for word; a pair over 300 characters; a pair on the second day."""
    folder = tmp_path / "scrapedxml"
    day_file(folder, "2021-03-12",
             heading("major", "HOME DEPARTMENT"), heading("minor", "Police: Manpower"),
             turn("ques", "Mr Jones", ASKED), turn("reply", "Kit Malthouse", ANSWERED),
             heading("minor", "Prisons"),
             turn("ques", "Ms Smith", "To ask the Secretary of State how many prisons there are."),
             turn("ques", "Mr Brown", "To ask the Secretary of State how many prisoners there are."),
             turn("reply", "Lucy Frazer", "I will answer these questions together.", "There are 117 prisons."),
             heading("minor", "Drugs"), turn("reply", "Kit Malthouse", "As I said on 3 March."),
             heading("minor", "Visas"), turn("ques", "Mr Green", "To ask the Secretary of State about visas."),
             heading("minor", "Police: Manpower"), turn("ques", "Mr Jones", ASKED), turn("reply", "Kit Malthouse", ANSWERED),
             heading("minor", "Long"), turn("ques", "Mr Long", "To ask " + "why " * 80), turn("reply", "A Minister", "Because."))
    day_file(folder, "2021-06-01", heading("major", "TREASURY"), heading("minor", "Tax"),
             turn("ques", "Mr Jones", "To ask the Chancellor what the rate of VAT is."),
             turn("reply", "Jesse Norman", "The standard rate of VAT is 20&#37;."))
    return folder


def test_questions_pair_with_the_next_answer_in_their_section_and_the_rest_is_counted(wrans):
    corpus = Corpus(str(wrans), validation_from="2021-05", test_from="2021-07")
    rows, counts = qa_rows(corpus, max_chars=300)
    assert {k: v for k, v in counts.items() if v} == {
        "questions": 7, "answers": 6, "answered_together": 2, "unmatched_answers": 1, "unmatched_questions": 1,
        "dropped_duplicate": 1, "dropped_too_long": 1, "pairs": 4, "pairs_written": 4, "pairs_train": 3,
        "pairs_validation": 1}
    # every question is paired, dropped or unmatched; every answer answers some question or is unmatched
    assert counts["pairs"] + counts["dropped_duplicate"] + counts["dropped_too_long"] + counts["unmatched_questions"] \
        == counts["questions"]
    first = rows["train"][0]
    assert first["messages"] == [
        {"role": "system", "content": "A written question in the House of Commons, answered on 2021-03-12. "
                                      "Answering: Home Department. Topic: Police: Manpower."},
        {"role": "user", "content": ASKED}, {"role": "assistant", "content": ANSWERED}]
    assert (first["asker"], first["answerer"], first["section"]) == ("Mr Jones", "Kit Malthouse", "answers2021-03-12a#s2")
    together = [r for r in rows["train"] if r["topic"] == "Prisons"]
    assert [r["asker"] for r in together] == ["Ms Smith", "Mr Brown"]
    assert {r["answer"] for r in together} == {"I will answer these questions together.\n\nThere are 117 prisons."}
    assert rows["validation"][0]["answer"] == "The standard rate of VAT is 20%." and not rows["test"]


def test_oral_questions_pair_by_their_marked_types_or_by_the_older_oral_qnum(tmp_path):
    """Debates: TheyWorkForYou's speech types (late 2020 on: questions asked together, supplementaries, a speech of
    another type passed over); the older markup (a question's oral-qnum, answered by the speech right after it; an
    unmarked supplementary is not a question)."""
    folder = tmp_path / "scrapedxml"
    day_file(folder, "2020-12-14", heading("oral", "Oral Answers to Questions"), heading("major", "Home Department"),
             heading("minor", "Police Officers"),
             turn("speech", "Jack Lopresti", "What steps her Department is taking on police numbers.",
                  type="Start Question"),
             turn("speech", "Gordon Henderson", "What steps her Department is taking on police numbers in Kent.",
                  type="Start Question"),
             turn("speech", "Priti Patel", "We are recruiting 20,000 officers.", type="Start Answer"),
             turn("speech", "Lindsay Hoyle", "Order.", type="Start Speech"),
             turn("speech", "Jack Lopresti", "Will she visit Filton?", type="Start SupplementaryQuestion"),
             turn("speech", "Priti Patel", "I will.", type="Start Answer"), kind="debates/debates")
    day_file(folder, "2009-10-26", heading("oral", "ORAL ANSWERS TO QUESTIONS"), heading("major", "HOME DEPARTMENT"),
             heading("minor", "Tasers"),
             turn("speech", "Norman Baker", "What his policy is on the use of Taser guns.", oral_qnum="2"),
             turn("speech", "David Hanson", "We are committed to providing the police with equipment."),
             turn("speech", "Norman Baker", "Is the Minister aware of the risks?"),
             turn("speech", "David Hanson", "I am."), kind="debates/debates")
    rows, counts = qa_rows(Corpus(str(folder)), max_chars=8000)
    pairs = [row for split in rows.values() for row in split]
    assert sorted((row["asker"], row["answer"]) for row in pairs) == [
        ("Gordon Henderson", "We are recruiting 20,000 officers."), ("Jack Lopresti", "I will."),
        ("Jack Lopresti", "We are recruiting 20,000 officers."),
        ("Norman Baker", "We are committed to providing the police with equipment.")]
    assert {row["form"] for row in pairs} == {"oral"} and counts["pairs_oral"] == 4
    assert counts["answered_together"] == 2 and not counts.get("unmatched_answers")
    tasers = next(row for row in pairs if row["topic"] == "Tasers")
    assert tasers["messages"][0]["content"] == ("An oral question in the House of Commons, answered on 2009-10-26. "
                                                "Answering: Home Department. Topic: Tasers.")


def test_the_command_writes_a_chat_dataset_and_refuses_what_it_cannot_do(wrans, tmp_path):
    out = tmp_path / "qa"
    done = cli("qa", f"--dataset={wrans}", f"--out={out}", "--validation-from=2021-05", "--test-from=2021-07",
               "--max-chars=300", HANSARD_HF_HOME=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert "pairs      4 (4 written, 0 oral): train 3, validation 1, test 0 (2 questions answered together)" \
        in done.stdout
    assert "unmatched  1 questions without an answer, 1 answers without a question" in done.stdout
    assert "dropped    1 too long, 1 duplicates, 0 empty" in done.stdout
    dataset = load_from_disk(str(out))
    assert {split: len(rows) for split, rows in dataset.items()} == {"train": 3, "validation": 1}  # no empty split
    assert dataset["train"][0]["messages"][1]["content"] == ASKED
    assert json.loads((out / COUNTS_FILE).read_text())["pairs"] == 4
    before = sorted(p.name for p in out.iterdir())
    again = cli("qa", f"--dataset={wrans}", f"--out={out}", HANSARD_HF_HOME=tmp_path / "home")
    assert again.returncode != 0 and "already exists and is not empty" in again.stderr
    assert sorted(p.name for p in out.iterdir()) == before
    refused = cli("qa", f"--dataset={wrans}", f"--out={tmp_path / 'd'}", "--dedup", HANSARD_HF_HOME=tmp_path / "home")
    assert refused.returncode != 0 and "qa drops repeated pairs itself" in refused.stderr
    unnamed = cli("qa", f"--out={tmp_path / 'e'}", HANSARD_HF_HOME=tmp_path / "home")
    assert unnamed.returncode != 0 and "name the corpus: --dataset=" in unnamed.stderr and "Traceback" not in \
        unnamed.stderr


def test_rows_without_kinds_or_without_pairs_are_one_clear_error_and_nothing_is_written(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"id": "a", "text": "Order. Order."}) + "\n")
    with pytest.raises(ValueError, match=r"plain.jsonl: Q&A pairs need the fields \['kind', 'debate_id', 'text'\]"):
        build_qa(Corpus(str(plain)), tmp_path / "out")
    speeches = tmp_path / "speeches.jsonl"
    speeches.write_text(json.dumps({"id": "a", "text": "Order.", "kind": "speech", "debate_id": "d1"}) + "\n")
    with pytest.raises(ValueError, match=r"no question-and-answer pair found \(0 questions, 0 answers read"):
        build_qa(Corpus(str(speeches)), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data/hansard")
def test_the_shared_sample_pairs_the_same_from_parlparse_xml_and_from_its_jsonl():
    """Two readers of the same written answers (ours of the ParlParse day files; the shared JSONL, built by others
    from the same files) find the same 1,738 questions, 1,704 answers and the same pairs."""
    split = dict(validation_from="2009-10-28", test_from="2009-10-29")
    xml_rows, xml_counts = qa_rows(Corpus(str(SHARED / "raw"), bodies=("written",), **split))
    jsonl_rows, jsonl_counts = qa_rows(Corpus(str(SHARED / "hansard_speeches.jsonl"), **split))
    assert (xml_counts["questions"], xml_counts["answers"]) == (jsonl_counts["questions"], jsonl_counts["answers"]) \
        == (1738, 1704)
    assert xml_counts["pairs"] == jsonl_counts["pairs"] and xml_counts["pairs"] > 1700

    def pairs(rows):  # by their words: the two readers lay out tables and "[holding answer ...]" notes differently
        def words(text):
            return re.sub(r"\W+", "", text)
        return {s: sorted((r["date"], words(r["question"]), words(r["answer"])[:60]) for r in found)
                for s, found in rows.items()}
    assert pairs(xml_rows) == pairs(jsonl_rows)
    for found, (start, end) in ((xml_rows["train"], ("", "2009-10-28")),
                                (xml_rows["validation"], ("2009-10-28", "2009-10-29")),
                                (xml_rows["test"], ("2009-10-29", "9999"))):
        assert found and all(start <= r["date"] < end for r in found)

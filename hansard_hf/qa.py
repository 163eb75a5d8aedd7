"""Parliament's questions and their answers -> a chat dataset (`hansard-hf qa`), for supervised fine-tuning.

Written questions and answers are read from ParlParse XML (`<ques>` and `<reply>` turns) or from rows with a `kind`
field (`question` / `answer`, as in `hansard_speeches.jsonl`). Oral questions are read from ParlParse debates: where
a speech's type is marked (TheyWorkForYou's `Start Question`, `Start SupplementaryQuestion`, `Start Answer`, from
late 2020), by it; in the older markup, a question is a speech with an `oral-qnum` and its answer the speech right
after the questions (supplementary questions are not marked there, so are not paired). Turns are paired within their
section (a ParlParse section, a row's `debate_id`), in order: each question gets the next answer after it, and
questions asked together before one answer each get that answer. An answer with no question before it, and a
question no answer follows, are counted as unmatched. A pair is dropped when it is over `max_chars` or repeats an
earlier pair word for word. Pairs are split as the corpus is (a temporal split by date, else a hash of the section: a
section's pairs stay together).

Each pair becomes a conversation in the messages format TRL's SFTTrainer reads: a system message with the context
(the body, date, answering office and topic), the question as the user's turn and the answer as the assistant's.
"""

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .files import atomic_directory
from .parlparse import day_of, is_xml_file, turns
from .selection import SPLITS, body_of

if TYPE_CHECKING:
    from .data import Corpus

QUESTION, ANSWER = "question", "answer"
KINDS = {"ques": QUESTION, "reply": ANSWER, QUESTION: QUESTION, ANSWER: ANSWER}  # ParlParse's tags, rows' kinds
SPEECH_TYPES = {"Start Question": QUESTION, "Start SupplementaryQuestion": QUESTION, "Start Answer": ANSWER}
MAX_CHARS = 8000  # a pair longer than this (question + answer) is dropped: a few thousand tokens
COUNTS_FILE = "qa_counts.json"
BODY_NAMES = {"commons-written-answers": "House of Commons", "lords-written-answers": "House of Lords",
              "scottish-parliament-written-answers": "Scottish Parliament", "commons": "House of Commons",
              "lords": "House of Lords", "westminster-hall": "Westminster Hall", "scottish-parliament":
              "Scottish Parliament", "ni-assembly": "Northern Ireland Assembly", "senedd": "Senedd"}


@dataclass(frozen=True)
class Turn:
    """One question, answer or other turn, with where it was said."""

    kind: str  # question, answer, or another kind (passed over)
    form: str  # written or oral
    text: str
    speaker: str
    section: str  # pairs are made within a section only
    date: str
    body: str
    office: str  # the section's major heading: the department or office that answers
    topic: str  # its minor heading


def speech_kind(turn: dict, follows_oral_question: bool) -> str:
    """An oral question, an answer to one, or another speech: by its marked type, else by the older markup (a
    question has an `oral-qnum`; the speech right after questions answers them)."""
    if turn["type"]:
        return SPEECH_TYPES.get(turn["type"], turn["kind"])
    if turn["oral_question"]:
        return QUESTION
    return ANSWER if follows_oral_question else turn["kind"]


def xml_turns(corpus: "Corpus") -> Iterator[Turn]:
    """The turns of the corpus's ParlParse day files that its selection keeps, in order."""
    for file in corpus.day_files(corpus.files()):
        body, date, _ = day_of(file)
        previous = None
        for turn in turns(file):
            if turn["kind"] in KINDS:
                kind, form = KINDS[turn["kind"]], "written"
            else:
                follows = (previous is not None and previous["section"] == turn["section"]
                           and previous["oral_question"] and not previous["type"])
                kind, form = speech_kind(turn, follows), "oral"
            previous = turn
            yield Turn(kind, form, "\n\n".join(turn["paragraphs"]), turn["speaker"], turn["section"], date, body,
                       turn["major"], turn["minor"])


def table_rows(corpus: "Corpus") -> Iterator[dict]:
    """The corpus's rows: JSON Lines read line by line (rows may differ in their fields, as hansard_speeches.jsonl's
    do), other tables and Hub datasets through `datasets`."""
    files = corpus.files()
    if files and all(file.endswith(".jsonl") for file in files):
        for file in files:
            with open(file, encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise ValueError(f"{file}, line {number}: not JSON ({error}).") from None
        return
    yield from corpus.dataset()


def row_turns(corpus: "Corpus") -> Iterator[Turn]:
    """The turns of a table of rows with `kind`, `debate_id`, `date`, `type` (or `body`), headings and speaker."""
    needed = ("kind", "debate_id", corpus.text_field)
    for row in table_rows(corpus):
        if any(field not in row for field in needed):
            raise ValueError(f"{corpus.source}: Q&A pairs need the fields {list(needed)} in every row (each turn's "
                             f"kind, question or answer, and its section); a row has {sorted(row)}. Give ParlParse "
                             "XML day files (--dataset=scrapedxml/) or rows like hansard_speeches.jsonl.")
        body = body_of(row.get("type") or row.get("body"))
        date = str(row.get("date") or "")[:10]
        if not corpus.keeps(body, date, row.get("language")):
            continue
        yield Turn(KINDS.get(row["kind"], row["kind"]), "written", row[corpus.text_field] or "",
                   row.get("speaker") or "", str(row["debate_id"]), date, body or "", row.get("major_heading") or "",
                   row.get("minor_heading") or "")


def paired(turns_in_order, counts: Counter) -> Iterator[tuple[list[Turn], Turn]]:
    """(questions, their answer) within each section, in order; `counts` gets the questions, answers, unmatched ones
    and the questions answered together."""
    pending, section = [], None
    for turn in turns_in_order:
        if turn.section != section:
            counts["unmatched_questions"] += len(pending)
            pending, section = [], turn.section
        if turn.kind == QUESTION:
            counts["questions"] += 1
            pending.append(turn)
        elif turn.kind == ANSWER:
            counts["answers"] += 1
            if not pending:
                counts["unmatched_answers"] += 1
                continue
            counts["answered_together"] += len(pending) if len(pending) > 1 else 0
            yield pending, turn
            pending = []
    counts["unmatched_questions"] += len(pending)


def context(answer: Turn) -> str:
    """The system message: where and when the question was answered, by which office, on what."""
    office = answer.office.title() if answer.office.isupper() else answer.office
    parts = [f"A{'n' if answer.form == 'oral' else ''} {answer.form} question in the "
             f"{BODY_NAMES.get(answer.body, answer.body or 'Parliament')}, answered on {answer.date}."]
    if office:
        parts.append(f"Answering: {office}.")
    if answer.topic:
        parts.append(f"Topic: {answer.topic}.")
    return " ".join(parts)


def conversation(question: Turn, answer: Turn) -> dict:
    """A pair as a row: the messages, and the fields they came from."""
    return {"messages": [{"role": "system", "content": context(answer)},
                         {"role": "user", "content": question.text},
                         {"role": "assistant", "content": answer.text}],
            "question": question.text, "answer": answer.text, "asker": question.speaker, "answerer": answer.speaker,
            "office": answer.office, "topic": answer.topic, "date": answer.date, "body": answer.body,
            "section": answer.section, "form": answer.form}


def qa_rows(corpus: "Corpus", max_chars: int = MAX_CHARS) -> tuple[dict[str, list[dict]], dict]:
    """The conversations of `corpus` by split, and the counts: questions, answers, pairs, unmatched, dropped."""
    files = corpus.files()
    read = xml_turns(corpus) if files is not None and files and is_xml_file(files[0]) else row_turns(corpus)
    counts, seen = Counter(), set()
    rows = {split: [] for split in SPLITS}
    for questions, answer in paired(read, counts):
        for question in questions:
            if not question.text.strip() or not answer.text.strip():
                counts["dropped_empty"] += 1
            elif len(question.text) + len(answer.text) > max_chars:
                counts["dropped_too_long"] += 1
            elif (question.text, answer.text) in seen:
                counts["dropped_duplicate"] += 1
            else:
                seen.add((question.text, answer.text))
                counts[f"pairs_{answer.form}"] += 1
                rows[corpus.split(answer.section, answer.date)].append(conversation(question, answer))
    counts.update({f"pairs_{split}": len(found) for split, found in rows.items()})
    counts["pairs"] = sum(len(found) for found in rows.values())
    return rows, dict(counts)


def build_qa(corpus: "Corpus", out, max_chars: int = MAX_CHARS, overwrite: bool = False) -> dict:
    """Write the Q&A chat dataset of `corpus` into `out` (a `datasets.DatasetDict` saved with `save_to_disk`, each
    split that has pairs, and COUNTS_FILE); returns the counts. No pair found is an error naming what was read."""
    from datasets import Dataset, DatasetDict

    rows, counts = qa_rows(corpus, max_chars)
    if not counts["pairs"]:
        raise ValueError(f"{corpus.source}: no question-and-answer pair found ({counts.get('questions', 0)} questions, "
                         f"{counts.get('answers', 0)} answers read; selection: {corpus.describe()}). Q&A pairs come "
                         "from written answers (ParlParse wrans / lordswrans / spwa files, or rows of kind question "
                         "and answer) and from oral questions in ParlParse debates (debates files).")
    with atomic_directory(Path(out), overwrite=overwrite) as folder:  # an empty split is left out (datasets 5.2
        # writes no table for it, and cannot load one back)
        DatasetDict({split: Dataset.from_list(found) for split, found in rows.items() if found}) \
            .save_to_disk(str(folder))
        (folder / COUNTS_FILE).write_text(json.dumps({"corpus": asdict(corpus), **counts}, indent=2) + "\n")
    return counts


def counts_text(counts: dict) -> str:
    """The counts in a few lines, as `hansard-hf qa` prints them."""
    c = Counter(counts)
    return "\n".join([
        f"read       {c['questions']:,} questions, {c['answers']:,} answers",
        f"pairs      {c['pairs']:,} ({c['pairs_written']:,} written, {c['pairs_oral']:,} oral): train "
        f"{c['pairs_train']:,}, validation {c['pairs_validation']:,}, test {c['pairs_test']:,} "
        f"({c['answered_together']:,} questions answered together)",
        f"unmatched  {c['unmatched_questions']:,} questions without an answer, {c['unmatched_answers']:,} answers "
        "without a question",
        f"dropped    {c['dropped_too_long']:,} too long, {c['dropped_duplicate']:,} duplicates, "
        f"{c['dropped_empty']:,} empty",
    ])

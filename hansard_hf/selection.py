"""Which Hansard documents a corpus keeps, and which split each goes to: bodies, dates and languages as researchers
select them, a temporal split beside the hash split, and duplicate paragraphs removed across splits.

Body names are ours (`commons`, `lords`, ...); the Common Pile's `source` values (`uk-hansard-commons-debates`) and
the shared JSONL's `type` values are read as aliases, and three groups name several bodies at once.
"""

import difflib
import hashlib
import re

import numpy as np
import xxhash

SPLITS = ("train", "validation", "test")
BODIES = {
    "commons": "House of Commons chamber debates",
    "westminster-hall": "Westminster Hall debates",
    "lords": "House of Lords chamber debates",
    "commons-written-answers": "Commons written answers",
    "lords-written-answers": "Lords written answers",
    "commons-written-statements": "Commons written (ministerial) statements",
    "lords-written-statements": "Lords written (ministerial) statements",
    "committees": "Commons standing and public bill committees",
    "scottish-parliament": "Scottish Parliament debates",
    "scottish-parliament-written-answers": "Scottish Parliament written answers",
    "ni-assembly": "Northern Ireland Assembly debates",
    "senedd": "Senedd (Welsh Parliament) debates, English and Welsh",
    "london-mayors-questions": "London Mayor's questions",
    "historic-hansard": "historic Hansard, 1803-2005 (Commons and Lords)",
}
GROUPS = {
    "westminster": ("commons", "westminster-hall", "lords", "commons-written-answers", "lords-written-answers",
                    "commons-written-statements", "lords-written-statements", "committees", "historic-hansard"),
    "written": ("commons-written-answers", "lords-written-answers", "commons-written-statements",
                "lords-written-statements", "scottish-parliament-written-answers"),
    "devolved": ("scottish-parliament", "scottish-parliament-written-answers", "ni-assembly", "senedd"),
}
ALIASES = {  # the Common Pile's sources (its "westminister" spelling too) and the shared JSONL's types
    "commons-debates": "commons", "lords-debates": "lords", "westminister-hall": "westminster-hall",
    "written-answers": "commons-written-answers", "written-ministerial-statements": "commons-written-statements",
    "lords-written-ministerial-statements": "lords-written-statements", "standing-committees": "committees",
    "public-bill-committee": "committees", "northern-ireland-assembly": "ni-assembly", "senedd-en": "senedd",
    "senedd-cy": "senedd",
}
MIN_WORDS = 5  # shorter paragraphs (headings, "Order.", "Hear, hear.") are kept wherever they repeat
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def body_of(value) -> str | None:
    """Our name of the body a row's body/type/source value names (unknown values are kept as they are)."""
    if value is None:
        return None
    name = str(value).strip().lower().removeprefix("uk-hansard-")
    return ALIASES.get(name, name)


def names(value) -> tuple[str, ...]:
    """Lower-case names from a comma-separated string or a list (recipes and the CLI give either)."""
    values = value.split(",") if isinstance(value, str) else value or ()
    return tuple(key for key in (str(v).strip().lower() for v in values) if key)


def bodies_named(value) -> tuple[str, ...]:
    """The bodies that `value` (bodies, aliases or groups; a comma-separated string or a list) selects, checked."""
    chosen = []
    for key in names(value):
        if key in GROUPS:
            chosen += GROUPS[key]
            continue
        body = body_of(key)
        if body not in BODIES:
            known = [*BODIES, *GROUPS, *ALIASES]
            guess = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            raise ValueError(f"bodies: no body {key!r}{f' (did you mean {guess[0]!r}?)' if guess else ''}; the "
                             f"bodies are {', '.join(BODIES)}, and the groups {', '.join(GROUPS)}.")
        chosen.append(body)
    return tuple(dict.fromkeys(chosen))


def date_bound(value, field: str) -> str | None:
    """An ISO date bound (2020, 2020-06 or 2020-06-15) as the full date it starts on."""
    if value is None:
        return None
    text = str(value).strip()
    if not _DATE.match(text):
        raise ValueError(f"{field}={value!r}: write a date as YYYY, YYYY-MM or YYYY-MM-DD (e.g. {field}=2020).")
    return (text + "-01-01")[:10] if len(text) == 4 else (text + "-01")[:10]


def split_of(doc_id: str, validation_percent: int = 5, test_percent: int = 5) -> str:
    """A document's split from sha1(id) % 100: the last percentages go to validation and test."""
    bucket = int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest(), 16) % 100
    if bucket < 100 - validation_percent - test_percent:
        return "train"
    return "validation" if bucket < 100 - test_percent else "test"


def temporal_split(date: str, validation_from: str, test_from: str) -> str:
    """train before `validation_from`, validation up to `test_from`, test from then on (ISO dates compare as text)."""
    return "train" if date < validation_from else "validation" if date < test_from else "test"


class ParagraphFilter:
    """Removes every paragraph (a block between blank lines) of `MIN_WORDS` or more words that the corpus already
    had, wherever the first copy was: exact copies, and near copies (the same words once case, punctuation and
    spacing are set aside: re-scraped days, "Question put and agreed to." in any form). So no such paragraph is in
    two splits. Seen paragraphs are kept in a Bloom filter of fixed size (2^30 bits, 128 MB, 7 hashes: under one
    false positive per 100,000 paragraphs up to 30 million distinct ones), so memory stays flat as the corpus grows."""

    BITS, HASHES = 2**30, 7

    def __init__(self):
        self.bits = np.zeros(self.BITS // 8, dtype=np.uint8)
        self.steps = np.arange(self.HASHES, dtype=np.uint64)
        self.exact = self.near = 0

    def _positions(self, keys: list[bytes]) -> np.ndarray:
        digests = np.frombuffer(b"".join(xxhash.xxh3_128_digest(k) for k in keys), dtype=np.uint64).reshape(-1, 2)
        return (digests[:, :1] + self.steps * (digests[:, 1:] | np.uint64(1))) & np.uint64(self.BITS - 1)

    def _seen(self, positions: np.ndarray) -> np.ndarray:
        return np.all(self.bits[positions >> np.uint64(3)] & (1 << (positions & np.uint64(7))).astype(np.uint8), axis=1)

    def __call__(self, text: str) -> str:
        """`text` without its already-seen paragraphs (counted in `exact` and `near`); "" when none of its long
        paragraphs is new (the document adds nothing: dropped)."""
        paragraphs = text.split("\n\n")
        long = [k for k, p in enumerate(paragraphs) if len(p.split()) >= MIN_WORDS]
        if not long:
            return text
        exact = [b"x" + paragraphs[k].encode() for k in long]
        near = [b"n" + " ".join(re.findall(r"\w+", paragraphs[k].lower())).encode() for k in long]
        positions = self._positions(exact + near)
        seen = self._seen(positions)
        drop, here = set(), set()
        for i, k in enumerate(long):
            if seen[i] or exact[i] in here:
                self.exact += 1
            elif seen[len(long) + i] or near[i] in here:
                self.near += 1
            else:
                here.update((exact[i], near[i]))
                continue
            drop.add(k)
        np.bitwise_or.at(self.bits, positions >> np.uint64(3), (1 << (positions & np.uint64(7))).astype(np.uint8))
        if len(drop) == len(long):
            return ""
        return "\n\n".join(p for k, p in enumerate(paragraphs) if k not in drop) if drop else text

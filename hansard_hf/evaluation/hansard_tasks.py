"""A Hansard benchmark built deterministically from held-out debates, scored like CORE multiple choice.

- `hansard_next_speech`: given the debate so far, pick the true next speech among up to 3 other speeches of the
  same debate.
- `hansard_who_speaks`: given the debate so far and the next speech, pick who said it among the debate's speakers.

Debates are texts of `Speaker Name: speech` paragraphs separated by blank lines (the Common Pile uk_hansard format).
"""

import random
import re

from .core_benchmark import Task

TURN = re.compile(r"^(?P<speaker>[^:\n]{2,80}): (?P<speech>\S.*)$", re.DOTALL)
CONTEXT_CHARS, SPEECH_CHARS, CHOICES = 1200, 300, 4


def turns(text: str) -> list[tuple[str, str]]:
    """(speaker, speech) for every paragraph that is a speaker turn."""
    found = []
    for paragraph in text.split("\n\n"):
        match = TURN.match(paragraph.strip())
        if match:
            found.append((match["speaker"].strip(), match["speech"].strip()[:SPEECH_CHARS]))
    return found


def _context(debate: list[tuple[str, str]], position: int) -> str:
    """The turns before `position`, the most recent CONTEXT_CHARS characters, starting at a turn boundary."""
    context = ""
    for speaker, speech in reversed(debate[:position]):
        block = f"{speaker}: {speech}\n\n"
        if context and len(block) + len(context) > CONTEXT_CHARS:
            break
        context = block + context
    return context


def build_hansard_tasks(texts, max_per_task: int = 500, seed: int = 0) -> list[Task]:
    """The two tasks from an iterable of held-out debate texts (same texts, same tasks)."""
    next_speech, who_speaks = [], []
    for number, text in enumerate(texts):
        if len(next_speech) >= max_per_task and len(who_speaks) >= max_per_task:
            break
        debate = turns(text)
        if len(debate) < 3:
            continue
        rng = random.Random(seed * 1_000_003 + number)
        position = rng.randrange(1, len(debate))
        speaker, speech = debate[position]
        context = _context(debate, position)
        others = list(dict.fromkeys(f"{s}: {t}" for i, (s, t) in enumerate(debate) if i != position))
        others = [o for o in others if o != f"{speaker}: {speech}"]
        if len(others) >= 1 and len(next_speech) < max_per_task:
            choices = [f"{speaker}: {speech}", *rng.sample(others, min(CHOICES - 1, len(others)))]
            rng.shuffle(choices)
            next_speech.append({"query": context, "choices": choices, "gold": choices.index(f"{speaker}: {speech}")})
        names = list(dict.fromkeys(s for s, _ in debate if s != speaker))
        if len(names) >= 1 and len(who_speaks) < max_per_task:
            candidates = [speaker, *rng.sample(names, min(CHOICES - 1, len(names)))]
            rng.shuffle(candidates)
            who_speaks.append({"query": context, "choices": [f"{name}: {speech}" for name in candidates],
                               "gold": candidates.index(speaker)})
    return [_task("hansard_next_speech", next_speech), _task("hansard_who_speaks", who_speaks)]


def _task(label: str, examples: list[dict]) -> Task:
    baseline = sum(1 / len(e["choices"]) for e in examples) / len(examples) if examples else 0.0
    return Task(label, "multiple_choice", 0, "", examples, baseline)

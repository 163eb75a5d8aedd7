"""The documentation stays true to the code: docs/options.md is the training options as the code defines them,
every relative link in README.md and docs/ reaches a file, and the README stays a short guide.

`python tests/test_docs.py` rewrites the options table in docs/options.md."""

import dataclasses
import inspect
import re
from pathlib import Path

import transformers

from hansard_hf import HansardTrainingArguments

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ROOT / "docs" / "options.md"
START, END = "<!-- options:start -->", "<!-- options:end -->"
README_MAX_LINES = 250


def own_options(arguments=HansardTrainingArguments) -> list[dataclasses.Field]:
    """The fields our class adds to TrainingArguments and those it overrides (annotated again in a hansard_hf class),
    in the order the classes declare them."""
    fields = {f.name: f for f in dataclasses.fields(arguments)}
    inherited = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    declared = [name for klass in reversed(arguments.__mro__) if klass.__module__.startswith("hansard_hf")
                for name in inspect.get_annotations(klass)]
    names = [name for name in fields if name not in inherited] + [name for name in declared if name in inherited]
    order = {name: i for i, name in enumerate(dict.fromkeys(declared))}
    return sorted((fields[name] for name in dict.fromkeys(names)), key=lambda f: order.get(f.name, len(order)))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type(field: dataclasses.Field) -> str:
    kind = field.type
    return kind if isinstance(kind, str) else kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return repr(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return repr(field.default_factory())
    return "required"


def options_table() -> str:
    """The Markdown table of our training options: option, type, default, and the field's help verbatim."""
    rows = ["| option | type | default | what it does |", "|---|---|---|---|"]
    for field in own_options():
        rows.append(f"| `{field.name}` | `{_cell(_type(field))}` | `{_cell(_default(field))}` | "
                    f"{_cell(field.metadata.get('help', ''))} |")
    return "\n".join(rows)


def _between_markers(text: str) -> str:
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def test_options_page_is_the_code():
    text = OPTIONS.read_text()
    assert START in text and END in text, f"{OPTIONS} lacks the markers {START} and {END}"
    assert _between_markers(text) == options_table(), "docs/options.md is out of date: run python tests/test_docs.py"


def test_options_cover_what_our_class_adds_and_overrides():
    names = {f.name for f in own_options()}
    assert {"matrix_lr", "save_every_minutes", "total_batch_size"} <= names  # added
    assert {"max_grad_norm", "logging_steps"} <= names                       # overridden TrainingArguments fields
    assert "learning_rate" not in names and "output_dir" not in names        # inherited as they are


def relative_links(markdown: str) -> list[str]:
    """Targets of inline links and images outside code: everything not a URL (scheme:) is relative."""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = [m.group(1).split()[0] for m in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+(?:\s+\"[^\"]*\")?)\)", prose)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def test_relative_links_reach_files():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in relative_links(page.read_text()):
            if "#" in target:
                broken.append(f"{page.relative_to(ROOT)}: {target} (link to the file, without an anchor)")
            elif not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
    assert not broken, "\n".join(broken)
    assert any(relative_links((ROOT / "README.md").read_text()))  # the check reads the README's links at all


def test_readme_is_a_short_guide():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move reference to docs/"


def write_options_page() -> None:
    text = OPTIONS.read_text()
    head, rest = text.split(START, 1)
    OPTIONS.write_text(f"{head}{START}\n{options_table()}\n{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    write_options_page()
    print(f"wrote the options table into {OPTIONS.relative_to(ROOT)}")

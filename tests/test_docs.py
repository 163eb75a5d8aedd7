"""The documentation stays true to the code: docs/options.md is the training options as the code defines them,
every relative link in README.md and docs/ reaches a file, and the README stays a short guide.

`python tests/test_docs.py` rewrites the options table in docs/options.md."""

import re
from pathlib import Path


from hansard_hf.arguments import group_title, hansard_options, option_default, option_type

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ROOT / "docs" / "options.md"
START, END = "<!-- options:start -->", "<!-- options:end -->"
README_MAX_LINES = 250


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def options_table() -> str:
    """A Markdown table of our training options per group: option, type, default, and the field's help verbatim."""
    rows = []
    for concern, settings in hansard_options().items():
        rows += ["", f"### {group_title(concern)}", "", "| option | type | default | what it does |", "|---|---|---|---|"]
        for field in settings:
            rows.append(f"| `{field.name}` | `{_cell(option_type(field))}` | `{_cell(option_default(field))}` | "
                        f"{_cell(field.metadata.get('help', ''))} |")
    return "\n".join(rows).strip("\n")


def _between_markers(text: str) -> str:
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def test_options_page_is_the_code():
    text = OPTIONS.read_text()
    assert START in text and END in text, f"{OPTIONS} lacks the markers {START} and {END}"
    assert _between_markers(text) == options_table(), "docs/options.md is out of date: run python tests/test_docs.py"


def test_train_help_lists_every_option_with_the_same_help():
    """`hansard-hf train --help` ends with the options, read from the same fields as docs/options.md."""
    from conftest import cli

    done = cli("train", "--help")
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    for field in [f for group in hansard_options().values() for f in group]:
        help_text = " ".join(field.metadata.get("help", "").split())
        assert f"--{field.name} ({option_type(field)}, default {option_default(field)}) {help_text}" in flat, field.name


def test_options_cover_what_our_class_adds_and_overrides():
    names = {f.name for group in hansard_options().values() for f in group}
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

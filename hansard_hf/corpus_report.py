"""See a corpus before training on it: documents, words and tokens by body (and distinct speakers, where documents
name them), by decade and by split, the duplicate
paragraphs deduplication removes (or would), and a PNG of tokens per year by body (`hansard-hf corpus`)."""

import os
from collections import defaultdict
from pathlib import Path

from .data import SPLITS, Corpus, batched
from .selection import ParagraphFilter
from .tokenization import bulk_encoder, load_tokenizer

PLOT_FILE = "corpus_tokens_per_year.png"
_ZERO = {"documents": 0, "words": 0, "tokens": 0, "speakers": 0}


def summarize(corpus: Corpus, tokenizer_dir, batch_documents: int = 2048) -> dict:
    """Counts of the selected corpus (tokens with the tokenizer in `tokenizer_dir`, a BOS per document as prepared):
    by body, decade, year and body, and split; documents read and kept; duplicate paragraphs removed (with `dedup`)
    or present (without: what `--dedup` would remove)."""
    encode = bulk_encoder(load_tokenizer(tokenizer_dir))
    tables = {name: defaultdict(lambda: dict(_ZERO)) for name in ("body", "decade", "year_body", "split")}
    counts: dict = {}
    duplicates = None if corpus.dedup else ParagraphFilter()
    speakers = defaultdict(set)  # distinct speakers per body, where documents name them (XML; the shared JSONL)
    for batch in batched(corpus.selected(counts), batch_documents):
        for document, ids in zip(batch, encode([d.text for d in batch])):
            if duplicates is not None:
                duplicates(document.text)
            body, year, words = document.body or "(unknown)", (document.date or "")[:4], len(document.text.split())
            speakers[body].update(document.speakers or ())
            keys = {"body": body, "decade": f"{year[:3]}0s" if year else "(undated)",
                    "year_body": (year or "(undated)", body), "split": document.split}
            for table, key in keys.items():
                row = tables[table][key]
                row["documents"] += 1
                row["words"] += words
                row["tokens"] += len(ids) + 1
    if not counts.get("kept"):
        raise ValueError(f"{corpus.source}: the corpus is empty.")
    for body, names in speakers.items():
        tables["body"][body]["speakers"] = len(names)
    return {
        "source": corpus.source, "selection": corpus.describe(), "tokenizer": str(tokenizer_dir),
        "read": counts["read"], "selected": counts["selected"], "kept": counts["kept"], "dedup": corpus.dedup,
        "duplicates": ({"removed": counts["removed"]} if corpus.dedup else
                       {"present": {"exact": duplicates.exact, "near": duplicates.near}}),
        "by_body": dict(sorted(tables["body"].items(), key=lambda item: -item[1]["tokens"])),
        "by_decade": dict(sorted(tables["decade"].items())),
        "by_split": {split: tables["split"].get(split, dict(_ZERO)) for split in SPLITS},
        "by_year_and_body": [{"year": y, "body": b, **row} for (y, b), row in sorted(tables["year_body"].items())],
    }


def summary_text(summary: dict) -> str:
    """The tables `hansard-hf corpus` prints."""
    from .counting import advice

    total = sum(row["tokens"] for row in summary["by_body"].values())
    lines = [f"corpus     {summary['source']}", f"selection  {summary['selection']}",
             f"tokens     with {summary['tokenizer']} (a BOS per document, as prepared)",
             f"documents  {summary['read']:,} read, {summary['selected']:,} selected, {summary['kept']:,} kept"]
    duplicates = summary["duplicates"]
    if "removed" in duplicates:
        exact = sum(r["exact"] for r in duplicates["removed"].values())
        near = sum(r["near"] for r in duplicates["removed"].values())
        emptied = sum(r["documents"] for r in duplicates["removed"].values())
        lines.append(f"duplicates {exact:,} exact + {near:,} near-duplicate paragraphs removed; {emptied:,} documents "
                     "left with nothing new dropped")
    else:
        present = duplicates["present"]
        lines.append(f"duplicates {present['exact']:,} exact + {present['near']:,} near-duplicate paragraphs repeat "
                     "earlier ones (kept: --dedup removes them)")
    for title in ("body", "decade", "split"):
        table = summary[f"by_{title}"]
        named = title == "body" and any(row["speakers"] for row in table.values())
        lines += ["", f"{'by ' + title:<38}{'documents':>11}{'words':>15}{'tokens':>15}{'share':>8}"
                  + (f"{'speakers':>10}" if named else "")]
        for key, row in table.items():
            share = row["tokens"] / total if total else 0.0
            lines.append(f"{key:<38}{row['documents']:>11,}{row['words']:>15,}{row['tokens']:>15,}{share:>8.1%}"
                         + (f"{row['speakers']:>10,}" if named else ""))
    return "\n".join(lines + ["", advice(summary["by_split"]["train"]["tokens"])])


def plot_tokens_per_year(summary: dict, out) -> Path | None:
    """A stacked bar chart of tokens per year, one colour per body, written to `out` (PNG) in one step; None when no
    document has a date."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["by_year_and_body"] if r["year"].isdigit()]
    if not rows:
        return None
    years = sorted({int(r["year"]) for r in rows})
    bodies = list(summary["by_body"])
    figure, axis = plt.subplots(figsize=(9, 4.8), dpi=150)
    bottom = dict.fromkeys(years, 0.0)
    colours = plt.get_cmap("tab20")
    for k, body in enumerate(bodies):
        values = {int(r["year"]): r["tokens"] / 1e6 for r in rows if r["body"] == body}
        if values:
            heights = [values.get(y, 0.0) for y in years]
            axis.bar(years, heights, bottom=[bottom[y] for y in years], width=0.8, label=body, color=colours(k % 20))
            for y, h in zip(years, heights):
                bottom[y] += h
    axis.set_xlabel("year")
    axis.set_ylabel("tokens (millions)")
    axis.set_title(f"Tokens per year by body: {Path(summary['source']).name}")
    axis.legend(fontsize=7, ncol=2, loc="upper left")
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}.png")
    figure.savefig(partial)
    plt.close(figure)
    os.replace(partial, out)
    return out

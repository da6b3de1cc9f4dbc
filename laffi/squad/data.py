"""SQuAD-format questions: load (file or HF dataset id), sample deterministically, split by article title.

Usage:
    examples, problems = load_squad("../shared/data/squad_v2/dev-12-articles.json")
    eval_set = select_articles(examples, "eval")            # the fixed split below, or "Title_A,Title_B"
    sample = sample_examples(eval_set, limit=50, seed=0)
    examples, problems = DataArgs(data="squad.json", articles="eval", limit=50).select()   # all three at once

Accepted inputs: the official nested SQuAD JSON (v1.1 or v2.0), flat JSON/JSONL records in the Hugging Face
`squad_v2` layout (id, title, context, question, answers{text, answer_start}), or a dataset id loaded through
`datasets` where the hub is reachable. Bad records are reported (with their id) and skipped; good ones stay usable.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field

from laffi.errors import LaffiError, check_at_least_one
from laffi.io import parse_jsonl

# The fixed article split of ../shared/data/squad_v2/dev-12-articles.json used for the shipped adapters and the
# README's numbers. Written down once, before any score was seen, and never tuned: training and evaluation
# never share a passage. "validation" is the held-out slice of the training articles used to choose settings.
ARTICLE_SPLITS = {
    "train": ("Computational_complexity_theory", "Huguenot", "European_Union_law", "Packet_switching",
              "Yuan_dynasty", "Imperialism", "French_and_Indian_War"),
    "validation": ("Islamism",),
    "eval": ("Normans", "Steam_engine", "Immune_system", "Warsaw"),
}


@dataclass(frozen=True)
class QAExample:
    qid: str
    title: str
    context: str
    question: str
    answers: tuple[str, ...] = ()  # empty = unanswerable (SQuAD v2)
    answer_starts: tuple[int, ...] = field(default=(), compare=False)
    # SQuAD 2.0's plausible-but-wrong spans of an unanswerable question (official JSON only; the HF layout lacks
    # them). Never a gold answer: laffi.feedback.drafts uses them as drafts that should have abstained.
    plausible_answers: tuple[str, ...] = field(default=(), compare=False)
    plausible_starts: tuple[int, ...] = field(default=(), compare=False)

    @property
    def is_impossible(self) -> bool:
        return not self.answers

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("answers", "answer_starts", "plausible_answers", "plausible_starts"):
            d[key] = list(d[key])
        return d


def _parse_answers(raw) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if isinstance(raw, dict):  # HF layout: {"text": [...], "answer_start": [...]}
        texts, starts = raw.get("text", []), raw.get("answer_start", [])
    else:  # SQuAD layout: [{"text", "answer_start"}]
        texts = [a["text"] for a in raw]
        starts = [a.get("answer_start", -1) for a in raw]
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("an answer text is not a string")
    return tuple(texts), tuple(int(s) for s in starts)


def parse_record(rec: dict, title: str | None = None, context: str | None = None) -> QAExample:
    """One question record -> QAExample; raises ValueError with the reason when a field is missing or wrong."""
    if not isinstance(rec, dict):
        raise ValueError("the record is not a JSON object")
    missing = [k for k in ("id", "question") if not isinstance(rec.get(k), str) or not rec.get(k).strip()]
    context = context if context is not None else rec.get("context")
    if not isinstance(context, str) or not context.strip():
        missing.append("context")
    if missing:
        raise ValueError(f"missing or empty field(s): {', '.join(missing)}")
    answers, starts = _parse_answers(rec.get("answers", []))
    for text, start in zip(answers, starts):
        if start >= 0 and context[start:start + len(text)] != text:
            raise ValueError(f"answer_start {start} does not point at the answer {text!r} in the context")
    plausible, p_starts = (), ()
    if not answers and rec.get("plausible_answers"):  # only where the question has no gold answer
        spans = [(t, s if s >= 0 and context[s:s + len(t)] == t else context.find(t))
                 for t, s in zip(*_parse_answers(rec["plausible_answers"])) if t.strip()]
        spans = [(t, s) for t, s in spans if s >= 0]  # a span the passage does not contain is no use as a draft
        plausible, p_starts = tuple(t for t, _ in spans), tuple(s for _, s in spans)
    return QAExample(qid=rec["id"], title=str(title if title is not None else rec.get("title", "")),
                     context=context, question=rec["question"], answers=answers, answer_starts=starts,
                     plausible_answers=plausible, plausible_starts=p_starts)


def _iter_nested(doc: dict):
    for article in doc["data"]:
        for para in article.get("paragraphs", []):
            for rec in para.get("qas", []):
                yield rec, article.get("title", ""), para.get("context")


def parse_squad(doc, source: str) -> tuple[list[QAExample], list[str]]:
    """Parse a loaded JSON document (nested SQuAD or a list of flat records)."""
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        items = list(_iter_nested(doc))
    elif isinstance(doc, list):
        items = [(rec, None, None) for rec in doc]
    else:
        raise LaffiError(f"{source} is not SQuAD data: expected an object with a 'data' list (official SQuAD "
                         "JSON) or a list of question records.")
    examples, problems, seen = [], [], set()
    for n, (rec, title, context) in enumerate(items, 1):
        rid = rec.get("id", f"#{n}") if isinstance(rec, dict) else f"#{n}"
        try:
            ex = parse_record(rec, title, context)
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"{source}: record {rid}: {e}")
            continue
        if ex.qid in seen:
            problems.append(f"{source}: record {rid}: duplicate id, skipped")
            continue
        seen.add(ex.qid)
        examples.append(ex)
    return examples, problems


def _read_file(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise LaffiError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8 JSON.") from e
    except OSError as e:
        raise LaffiError(f"Could not read {path}: {e.strerror}.") from e
    if path.endswith(".jsonl"):
        return parse_jsonl(text, path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LaffiError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from e


def _load_hub(dataset_id: str, split: str):
    try:
        import datasets

        return [dict(r) for r in datasets.load_dataset(dataset_id, split=split)]
    except Exception as e:  # offline, unknown id, unknown split: all the user's to fix
        raise LaffiError(f"Could not load the dataset {dataset_id!r} (split {split!r}) through `datasets`: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}. Pass a SQuAD JSON file "
                         "instead if this machine has no Hugging Face hub access.") from e


def looks_like_path(source: str) -> bool:
    return source.endswith((".json", ".jsonl")) or source.startswith((".", "/", "~")) or source.count("/") > 1


def load_squad(source: str, split: str = "validation") -> tuple[list[QAExample], list[str]]:
    """Load questions from a file path or dataset id; returns (examples, problems with bad records)."""
    source = os.path.expanduser(str(source))
    if os.path.isfile(source):
        doc = _read_file(source)
    elif looks_like_path(source) or os.path.isdir(source):
        raise LaffiError(f"The data file {source!r} does not exist; pass a SQuAD JSON file or a dataset id.")
    else:
        doc = _load_hub(source, split)
    examples, problems = parse_squad(doc, os.path.basename(source))
    if not examples:
        detail = f" (first problem: {problems[0]})" if problems else ""
        raise LaffiError(f"{source} holds no usable SQuAD questions{detail}.")
    return examples, problems


def dataset_record(source: str | os.PathLike) -> dict:
    """Where numbers came from, as a result file records it: the file's name and the first 16 hex digits of its
    SHA-256 (a Hub dataset: its id), never a machine's path, so a record means the same on every checkout."""
    from laffi.io import file_digest

    path = os.fspath(source)
    if not os.path.isfile(path):
        return {"dataset": path}  # a Hub id such as "squad_v2"
    return {"dataset": os.path.basename(path), "sha256": file_digest(path)}


def titles(examples: list[QAExample]) -> list[str]:
    return list(dict.fromkeys(ex.title for ex in examples))


def article_titles(articles: str) -> tuple[str, ...]:
    """The titles an article selection names: a split name from ARTICLE_SPLITS, or comma-separated titles."""
    return ARTICLE_SPLITS.get(articles) or tuple(t.strip() for t in articles.split(",") if t.strip())


def select_articles(examples: list[QAExample], articles: str | None) -> list[QAExample]:
    """Keep the questions of some articles: a split name from ARTICLE_SPLITS or comma-separated titles ("all" or
    nothing: every article)."""
    if not articles or articles == "all":
        return examples
    wanted = article_titles(articles)
    unknown = [t for t in wanted if t not in set(titles(examples))]
    if unknown:
        raise LaffiError(f"Article {unknown[0]!r} is not in the data; use a split name "
                         f"({', '.join(ARTICLE_SPLITS)}) or titles from the file.")
    keep = set(wanted)
    return [ex for ex in examples if ex.title in keep]


def sample_examples(examples: list[QAExample], limit: int | None, seed: int = 0) -> list[QAExample]:
    """A seeded random subset of `limit` questions, kept in file order (same seed -> same questions)."""
    if limit is None or limit >= len(examples):
        return list(examples)
    if limit < 1:
        raise LaffiError(f"--limit must be at least 1, not {limit}.")
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def select_data(source: str, articles: str | None = None, limit: int | None = None, seed: int = 0,
                split: str = "validation") -> tuple[list[QAExample], list[str]]:
    """What every command and tab means by "these questions": load `source` (file or dataset id), keep the articles
    (a split name or titles), draw a seeded sample of `limit`. Returns (examples, problems with skipped records)."""
    examples, problems = load_squad(source, split=split)
    return sample_examples(select_articles(examples, articles), limit, seed), problems


@dataclass
class DataArgs:
    """Which questions: what select_data takes (the `--data --articles --limit --seed` flags of every command that
    reads questions)."""

    data: str = field(metadata={"help": "SQuAD JSON/JSONL file, or a HF dataset id (needs the hub)."})
    split: str = field(default="validation", metadata={"help": "Split of a HF dataset id."})
    articles: str | None = field(default=None, metadata={"help": "A split name (train, validation, eval) or "
                                                                 "comma-separated titles."})
    limit: int | None = field(default=None, metadata={"help": "A seeded random sample of N questions."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})

    def __post_init__(self):
        check_at_least_one(limit=self.limit)

    def select(self) -> tuple[list[QAExample], list[str]]:
        return select_data(self.data, self.articles, self.limit, self.seed, split=self.split)

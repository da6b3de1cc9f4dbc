"""Drafts for LaFFi to give feedback on: the model's own answer, plus synthetic drafts so every verdict is learned.

Usage:
    records = own_drafts(lm, examples)                              # the model answers: stage 1 (`predict`)
    records, mix = add_drafts(records, "own+synthetic", seed=0)   # records from `predict`; mix = counts per kind
    synthetic_drafts(record, random.Random(0), k=1)                # [(draft text, kind)] for one question

Why: LaFFi learns (passage, question, draft) -> feedback. With only the model's own drafts, what it sees is
lopsided: the 135M base model is exactly right on ~0% of training questions and rarely abstains, so it never
learns what "Correct" looks like nor when "no answer" is wrong, and it learns to call every answer wrong. The
synthetic drafts are cut from the record's own passage; the reference annotator then writes their feedback, so
a draft's verdict always follows from the gold answers, never from how the draft was made:

    own         the model's answer (from `predict`)
    gold        a gold span                                          -> Correct
    near_miss   the gold span grown, shrunk or shifted by 1-3 words  -> Partly correct
    other_span  a span of the passage sharing no word with any gold  -> Incorrect
    abstain     "no answer"             -> Incorrect when the passage answers it, Correct when it does not
    plausible   SQuAD 2.0's plausible answer of an unanswerable question -> Incorrect (should have abstained)

DRAFT_MIXES names the choice: "own" (the paper's setting), "own+synthetic" (own + k synthetic per question),
"synthetic" (k synthetic per question, no own draft: needs no generation, so a whole training split costs nothing
to draft; the verifier path judges short spans, which is what these drafts are), or "own+balanced": own drafts
plus synthetic ones of the scarcer verdict, until Correct and Incorrect are level (balancing_drafts).

The own drafts are the base model's answers (`predict`), or, with predicted_drafts, a trained model's answers read
from evaluation folders: the SFT folds' spans on the article each one left out are an SFT model's own answers to
every training question without having trained on it (in-sample answers would be mostly right, memorised), its
confident spans on unanswerable questions included - the paper's setting at this scale.
"""

from __future__ import annotations

import random
import re
from collections import Counter

from laffi.errors import LaffiError
from laffi.inference.events import OnEvent
from laffi.inference.surface import LanguageModel
from laffi.squad.metric import get_tokens

DRAFT_MIXES = ("own", "own+synthetic", "synthetic", "own+balanced")
# Which synthetic kind a question gets (weights), chosen so that with the own drafts every verdict is common:
# answerable questions mostly get right and nearly-right drafts (own drafts are ~never right), unanswerable ones
# "no answer" (right) or a plausible span (wrong in the adversarial way SQuAD 2.0 was built for).
ANSWERABLE_KINDS = {"gold": 0.5, "near_miss": 0.25, "abstain": 0.15, "other_span": 0.10}
UNANSWERABLE_KINDS = {"abstain": 0.6, "plausible": 0.4}
_WORD = re.compile(r"\S+")


def _words(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the whitespace-separated words of `text`."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]


def _clean(span: str) -> str:
    return span.strip().strip(",;:()\"'").rstrip(".").strip()


def _gold_span(rec: dict, rng: random.Random) -> tuple[str, int] | None:
    answers, starts = list(rec.get("answers") or []), list(rec.get("answer_starts") or [])
    options = [(a, s) for a, s in zip(answers, starts) if a.strip() and s >= 0] or \
              [(a, rec["context"].find(a)) for a in answers if a.strip() and a in rec["context"]]
    return rng.choice(options) if options else None


def near_miss(rec: dict, rng: random.Random) -> str | None:
    """The gold span with 1-3 words added, removed or shifted at one end (a partly correct draft)."""
    from laffi.feedback.annotation import categorise

    gold = _gold_span(rec, rng)
    if gold is None:
        return None
    context, (answer, start) = rec["context"], gold
    words = _words(context)
    inside = [i for i, (a, b) in enumerate(words) if a < start + len(answer) and b > start]
    if not inside:
        return None
    lo, hi = inside[0], inside[-1]
    for _ in range(12):
        n = rng.randint(1, 3)
        move = rng.choice(["grow_left", "grow_right", "shrink_left", "shrink_right", "shift_left", "shift_right"])
        a, b = {"grow_left": (lo - n, hi), "grow_right": (lo, hi + n), "shrink_left": (lo + n, hi),
                "shrink_right": (lo, hi - n), "shift_left": (lo - n, hi - n), "shift_right": (lo + n, hi + n)}[move]
        a, b = max(a, 0), min(b, len(words) - 1)
        if a > b:
            continue
        draft = _clean(context[words[a][0]:words[b][1]])
        if draft and categorise(rec["answers"], draft).startswith("partial"):
            return draft
    return None


def other_span(rec: dict, rng: random.Random) -> str | None:
    """A span of the passage, as long as a typical answer, that shares no word with any gold answer."""
    words = _words(rec["context"])
    gold_tokens = {t for a in rec.get("answers") or [] for t in get_tokens(a)}
    for _ in range(20):
        n = rng.randint(1, 4)
        if len(words) < n:
            return None
        a = rng.randrange(0, len(words) - n + 1)
        draft = _clean(rec["context"][words[a][0]:words[a + n - 1][1]])
        tokens = set(get_tokens(draft))
        if tokens and not tokens & gold_tokens:
            return draft
    return None


def plausible(rec: dict, rng: random.Random) -> str | None:
    """SQuAD 2.0's plausible answer of an unanswerable question (None for answerable ones or when absent)."""
    spans = [p for p in rec.get("plausible_answers") or [] if p.strip()]
    return rng.choice(spans) if spans and not rec.get("answers") else None


def _make(kind: str, rec: dict, rng: random.Random) -> str | None:
    if kind == "gold":
        gold = _gold_span(rec, rng)
        return gold[0] if gold else None
    if kind == "abstain":
        return ""
    return {"near_miss": near_miss, "other_span": other_span, "plausible": plausible}[kind](rec, rng)


def synthetic_drafts(rec: dict, rng: random.Random, k: int = 1) -> list[tuple[str, str]]:
    """k synthetic drafts for one question, kinds drawn by ANSWERABLE_KINDS / UNANSWERABLE_KINDS without repeats;
    a kind that can't be made for this question (no plausible span, a one-word gold to shrink...) gives way to
    the next draw."""
    weights = dict(ANSWERABLE_KINDS if rec.get("answers") else UNANSWERABLE_KINDS)
    if not rec.get("answers"):
        weights.setdefault("other_span", 0.0)  # fallback for unanswerable questions without a plausible span
    out = []
    while len(out) < k and any(w > 0 for w in weights.values()):
        kinds = [kk for kk, w in weights.items() if w > 0]
        kind = rng.choices(kinds, [weights[kk] for kk in kinds])[0]
        weights[kind] = 0.0
        draft = _make(kind, rec, rng)
        if draft is None:
            if kind == "plausible":
                weights["other_span"] = UNANSWERABLE_KINDS["plausible"]
            continue
        out.append((draft, kind))
    return out


def verdict_of(rec: dict, draft: str) -> str:
    """The reference annotator's verdict on a draft: "correct", "partial" or "incorrect"."""
    from laffi.feedback.annotation import categorise
    from laffi.inference.prompts import extract_answer

    kind = categorise(rec.get("answers") or [], extract_answer(draft))  # as reference_feedback reads a draft
    return "correct" if kind.startswith("correct") else "partial" if kind.startswith("partial") else "incorrect"


# the synthetic kinds that make a draft of each verdict, tried in order (the first that can be made wins)
MAKES = {("correct", True): ("gold",), ("correct", False): ("abstain",),
         ("incorrect", True): ("abstain", "other_span"), ("incorrect", False): ("plausible", "other_span")}


def balancing_drafts(records: list[dict], rng: random.Random) -> list[dict]:
    """Synthetic drafts of the scarcer verdict, Correct or Incorrect, until the two are level (Partly correct
    counts for neither): a Correct one is a gold span, or "no answer" where the passage does not answer; an
    Incorrect one "no answer" where it does, SQuAD 2.0's plausible span, or a span sharing no word with the gold.
    At most one per question, on questions (in seeded order) whose own draft is not of the scarcer verdict."""
    verdicts = [verdict_of(r, r.get("prediction") or "") for r in records]
    counts = Counter(verdicts)
    want = "incorrect" if counts["correct"] > counts["incorrect"] else "correct"
    need = abs(counts["correct"] - counts["incorrect"])
    order = [r for r, v in zip(records, verdicts) if v != want]
    rng.shuffle(order)
    out = []
    for rec in order:
        if len(out) >= need:
            break
        for kind in MAKES[want, bool(rec.get("answers"))]:
            draft = _make(kind, rec, rng)
            if draft is not None and verdict_of(rec, draft) == want:
                out.append(dict(rec, prediction=draft, raw=draft, predicted_by="synthetic", draft_kind=kind))
                break
    return out


def add_drafts(records: list[dict], mix: str = "own", seed: int = 0, k: int = 1) -> tuple[list[dict], dict]:
    """Every record keeps its own draft (draft_kind "own"); with mix "own+synthetic" each question also gets k
    synthetic drafts as extra records (same qid); with "synthetic" only those; with "own+balanced" the own drafts
    and balancing_drafts. Returns (records, {kind: count})."""
    if mix not in DRAFT_MIXES:
        raise LaffiError(f"The draft mix must be one of {', '.join(DRAFT_MIXES)}, not {mix!r}.")
    if k < 1:
        raise LaffiError(f"Synthetic drafts per question must be at least 1, not {k}.")
    rng = random.Random(seed)
    out = []
    for rec in records:
        if mix != "synthetic":
            out.append(dict(rec, draft_kind=rec.get("draft_kind") or "own"))
        if mix in ("own+synthetic", "synthetic"):
            for draft, kind in synthetic_drafts(rec, rng, k):
                out.append(dict(rec, prediction=draft, raw=draft, predicted_by="synthetic", draft_kind=kind))
    if mix == "own+balanced":
        out += balancing_drafts(out, rng)
    return out, dict(Counter(r["draft_kind"] for r in out))


def prediction_folders(patterns: list[str]) -> list:
    """The evaluation folders (Paths, sorted, each once) that `patterns` (globs allowed) match and that hold an
    examples.jsonl."""
    import glob
    from pathlib import Path

    return sorted({Path(p) for pattern in patterns for p in glob.glob(pattern) if (Path(p) / "examples.jsonl").is_file()})


def predicted_drafts(examples, folders: list[str]) -> list[dict]:
    """Each example's own draft read from evaluation folders (globs allowed; <folder>/examples.jsonl, as
    laffi.evaluation.evaluate writes it): its best span - shown or not, so that an unanswerable question keeps the
    model's confident answer - predicted_by the folder's variant. Every example must be answered exactly once."""
    from laffi.evaluation.evaluate import row_span
    from laffi.io import read_jsonl

    found = prediction_folders(folders)
    if not found:
        raise LaffiError(f"draft_predictions names no evaluation folder with an examples.jsonl: {', '.join(folders)}.")
    answers: dict[str, tuple[str, str]] = {}
    for folder in found:
        for row in read_jsonl(folder / "examples.jsonl"):
            if row["qid"] in answers:
                raise LaffiError(f"Question {row['qid']} is answered in two draft_predictions folders (the second: "
                                 f"{folder}): give each question one model's answer.")
            answers[row["qid"]] = (row_span(row) or "", folder.name)
    missing = [e.qid for e in examples if e.qid not in answers]
    if missing:
        raise LaffiError(f"{len(missing)} of {len(examples)} training questions have no answer in draft_predictions "
                         f"({len(found)} folders; first missing: {missing[0]}).")
    return [dict(e.to_dict(), prediction=answers[e.qid][0], raw=answers[e.qid][0], predicted_by=answers[e.qid][1])
            for e in examples]


def own_drafts(lm: LanguageModel, examples, gen=None, on_event: OnEvent | None = None,
               variant: str = "base") -> list[dict]:
    """The model answers each question; records keep everything later stages need (a `datasets` JSON dataset).
    on_event: the answers' events (laffi.inference.events)."""
    from laffi.inference.generation import answer_questions

    answers = answer_questions(lm, [(e.context, e.question) for e in examples], [variant], gen, on_event)[variant]
    return [dict(e.to_dict(), prediction=a.text, raw=a.raw, predicted_by=variant) for e, a in zip(examples, answers)]

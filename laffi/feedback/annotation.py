"""Stage 2: natural-language feedback on each (question, prediction, gold answers), from mixable annotators.

Usage:
    fb = reference_feedback(record, rng)                     # AI, deterministic, grounded in the gold answers
    records, report = annotate(records, annotator="reference", seed=0)
    records, report = annotate(records, annotator="llm", lm=lm)   # checked; failures replaced by `reference`
    records, report = annotate_with_human(records, "reference", human="data/feedback.sqlite", human_fraction=0.5)
    records, report = feedback_examples(store.rows())   # every collected feedback row a training row (demo loop)

Every feedback starts with a verdict (Correct / Partly correct / Incorrect), says why with a pointer into the
passage, and ends with what the answer should be: "... so the answer should be X." or "... so the right reply
is: no answer." parse_feedback (prompts.py) reads both ends back, for checks and for self-revision.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

from laffi.errors import LaffiError
from laffi.inference.events import OnEvent
from laffi.inference.prompts import NO_ANSWER, extract_answer, first_line, parse_feedback, render
from laffi.inference.surface import LanguageModel
from laffi.squad.metric import compute_exact, compute_f1, get_tokens, gold_answers

CATEGORIES = ("correct", "correct_abstain", "should_abstain", "wrong_abstain", "partial_sentence",
              "partial_extra", "partial_missing", "partial_overlap", "wrong")


def _best_gold(answers, pred: str) -> tuple[str, int]:
    """The gold answer closest to the prediction (max F1, then the most frequent), with its index."""
    golds = list(answers)
    counts = Counter(golds)
    i = max(range(len(golds)), key=lambda k: (compute_f1(golds[k], pred), counts[golds[k]], -k))
    return golds[i], i


def categorise(answers, pred: str) -> str:
    """Which kind of right or wrong the prediction is (see CATEGORIES); the gold answers decide, nothing else."""
    pred = extract_answer(pred or "")  # a raw "No answer." (e.g. from a human row) means abstaining
    golds = gold_answers(answers)
    if golds == [""]:
        return "correct_abstain" if not get_tokens(pred) else "should_abstain"
    if not get_tokens(pred):
        return "wrong_abstain"
    if max(compute_exact(g, pred) for g in golds):
        return "correct"
    gold, _ = _best_gold(golds, pred)
    g, p = Counter(get_tokens(gold)), Counter(get_tokens(pred))
    if not g & p:
        return "wrong"
    if not g - p:  # every gold token is in the prediction: it says more than needed
        return "partial_sentence" if sum(p.values()) >= max(8, 3 * sum(g.values())) else "partial_extra"
    if not p - g:
        return "partial_missing"
    return "partial_overlap"


QUOTE_WORDS = 10  # a draft quoted in feedback is cut to this many words: the verdict needs its gist, not all of it
SNIPPET_WORDS = 12  # passage words quoted around the answer


def quoted(text: str, max_words: int = QUOTE_WORDS) -> str:
    """A draft as feedback quotes it: whole when short, else its first words and an ellipsis. Feedback must end
    with the answer within the generation limit, and a 30-word sentence quoted back would not."""
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]) + " …"


def passage_snippet(context: str, answer: str, start: int | None, max_words: int = SNIPPET_WORDS) -> str:
    """The words of the passage around the answer: its sentence, cut to about max_words centred on the answer."""
    if start is None or start < 0 or context[start:start + len(answer)] != answer:
        start = context.find(answer)
        if start < 0:
            return answer
    end = start + len(answer)
    left = context.rfind(". ", 0, start)
    right = context.find(". ", end)
    before = context[left + 2 if left >= 0 else 0:start].split()
    after = context[end:right + 1 if right >= 0 else len(context)].split()
    half = max((max_words - len(answer.split())) // 2, 1)
    return " ".join([*before[-half:], answer, *after[:half]]).strip().rstrip(".")


# Phrasings per category; {gold} {pred} {snippet} {question} are filled in. Every one ends with the target.
_TEMPLATES = {
    "correct": ["Correct: the passage says \"{snippet}\", so the answer should be {gold}.",
                "Correct. The passage states \"{snippet}\", so the answer should be {gold}.",
                "Correct: \"{pred}\" matches the passage (\"{snippet}\"), so the answer should be {gold}."],
    "correct_abstain": ["Correct: the passage does not answer this question, so the right reply is: {no}.",
                        "Correct. Nothing in the passage answers it, so the right reply is: {no}."],
    "should_abstain": ["Incorrect: {where}, and the passage does not answer this question, so the right reply "
                       "is: {no}.",
                       "Incorrect. The question cannot be answered from the passage; {where}, so the right reply "
                       "is: {no}."],
    "wrong_abstain": ["Incorrect: the passage does answer this: it says \"{snippet}\", so the answer should be {gold}.",
                      "Incorrect. The answer is in the passage (\"{snippet}\"), so the answer should be {gold}."],
    "partial_sentence": ["Partly correct: the reply is a whole sentence, not the short span asked for; the passage "
                         "says \"{snippet}\", so the answer should be {gold}.",
                         "Partly correct. It contains the answer but copies too much of the passage (\"{snippet}\"), "
                         "so the answer should be {gold}."],
    "partial_extra": ["Partly correct: \"{pred}\" has extra words; the passage says \"{snippet}\", so the answer "
                      "should be {gold}.",
                      "Partly correct. The span is too long: the passage says \"{snippet}\", so the answer should "
                      "be {gold}."],
    "partial_missing": ["Partly correct: \"{pred}\" leaves out part of the answer; the passage says \"{snippet}\", so "
                        "the answer should be {gold}.",
                        "Partly correct. The span is too short: the passage says \"{snippet}\", so the answer should "
                        "be {gold}."],
    "partial_overlap": ["Partly correct: \"{pred}\" overlaps the answer but is not it; the passage says "
                        "\"{snippet}\", so the answer should be {gold}.",
                        "Partly correct. Only some of it is right: the passage says \"{snippet}\", so the answer "
                        "should be {gold}."],
    "wrong": ["Incorrect: the passage says \"{snippet}\", so the answer should be {gold}.",
              "Incorrect. \"{pred}\" does not answer the question; the passage says \"{snippet}\", so the answer "
              "should be {gold}."],
}


def reference_feedback(rec: dict, rng: random.Random) -> tuple[str, str]:
    """(feedback, category) for one record with context, question, answers, answer_starts, prediction."""
    pred = extract_answer(rec.get("prediction") or "")  # "No answer." from a human row means abstaining
    answers = list(rec.get("answers") or [])
    category = categorise(answers, pred)
    gold, snippet, where = "", "", ""
    if answers:
        gold, i = _best_gold(gold_answers(answers), pred)
        starts = list(rec.get("answer_starts") or [])
        start = starts[answers.index(gold)] if gold in answers and answers.index(gold) < len(starts) else None
        snippet = passage_snippet(rec["context"], gold, start)
    if category == "should_abstain":
        where = (f"\"{quoted(pred)}\" appears in the passage but does not answer the question"
                 if pred in rec["context"] else f"\"{quoted(pred)}\" is not stated in the passage")
    template = rng.choice(_TEMPLATES[category])
    text = template.format(gold=gold, pred=quoted(pred), snippet=snippet, where=where, no=NO_ANSWER,
                           question=rec.get("question", ""))
    return text, category


def consistent_with_gold(feedback: str, answers, pred: str) -> tuple[bool, str]:
    """Does a feedback text agree with the gold answers? (verdict, and the answer it ends with)."""
    verdict, revised = parse_feedback(feedback)
    if not feedback.strip():
        return False, "empty"
    if verdict is None:
        return False, "no verdict at the start"
    truly_correct = categorise(answers, pred) in ("correct", "correct_abstain")
    if (verdict == "correct") != truly_correct:
        return False, f"verdict '{verdict}' contradicts the gold answers"
    if revised is None:
        return False, "does not say what the answer should be"
    if max(compute_exact(g, revised) for g in gold_answers(answers)) != 1:
        return False, f"ends with '{revised or NO_ANSWER}', which is not a gold answer"
    return True, "ok"


def llm_annotator_messages(rec: dict) -> list[dict]:
    golds = [a for a in rec.get("answers") or [] if a.strip()]
    gold_text = "; ".join(dict.fromkeys(golds)) if golds else "none: the passage does not answer the question"
    return [
        {"role": "system", "content":
            "You are an annotator who writes feedback on answers to reading-comprehension questions. Write one "
            "sentence: start with Correct, Partly correct or Incorrect, say why using the passage, and end with "
            "\"so the answer should be <the right answer>\" or, if the passage does not answer the question, "
            f"\"so the right reply is: {NO_ANSWER}\"."},
        {"role": "user", "content": f"Passage: {rec['context'].strip()}\n\nQuestion: {rec['question'].strip()}\n\n"
                                    f"Gold answer(s): {gold_text}\n\nModel's answer: "
                                    f"{(rec.get('prediction') or '').strip() or NO_ANSWER}"},
    ]


def llm_feedback(records: list[dict], lm: LanguageModel, variant: str = "base", max_new_tokens: int = 80,
                 batch_size: int = 8, on_event: OnEvent | None = None) -> list[str]:
    """Feedback written by a causal LM (the paper's AI annotator), one line per record; on_event: its events
    (stage "annotate", index: the record's)."""
    from laffi.inference.generation import GenerationConfig, generate_grid

    prompts = [render(lm.tokenizer, llm_annotator_messages(r)) for r in records]
    out = generate_grid(lm, prompts, [variant], GenerationConfig(max_new_tokens=max_new_tokens,
                                                                  batch_size=batch_size), on_event,
                        stage="annotate")
    return [first_line(t) for t in out[variant]]


def annotate(records: list[dict], annotator: str = "reference", seed: int = 0, lm: LanguageModel | None = None,
             on_fail: str = "replace", on_event: OnEvent | None = None) -> tuple[list[dict], dict]:
    """Add feedback, feedback_source, category (and llm_check for `llm`) to every record; returns a report."""
    rng = random.Random(seed)
    out, report = [], {"annotator": annotator, "n": len(records), "categories": {}}
    llm_texts = llm_feedback(records, lm, on_event=on_event) if annotator == "llm" else None
    failures = Counter()
    for i, rec in enumerate(records):
        ref_text, category = reference_feedback(rec, rng)
        new = dict(rec, category=category, feedback=ref_text, feedback_source="reference",
                   annotator="reference")
        if llm_texts is not None:
            ok, why = consistent_with_gold(llm_texts[i], rec.get("answers") or [], rec.get("prediction") or "")
            new["llm_feedback"], new["llm_check"] = llm_texts[i], why
            if ok or on_fail == "flag":
                new.update(feedback=llm_texts[i], feedback_source="llm", annotator="llm")
            if not ok:
                failures[why.split(" '")[0]] += 1
        out.append(new)
    report["categories"] = dict(Counter(r["category"] for r in out))
    if llm_texts is not None:
        n_fail = sum(failures.values())
        report["llm"] = {"passed": len(records) - n_fail, "failed": n_fail, "reasons": dict(failures),
                         "failed_records": "replaced by reference" if on_fail == "replace" else "kept, flagged"}
    return out, report


_WS = re.compile(r"\s+")


def question_key(text: str) -> str:
    return _WS.sub(" ", (text or "").strip().lower())


def match_human_feedback(records: list[dict], rows: list[dict]) -> tuple[dict[str, dict], list[str]]:
    """Attach human feedback rows (qid or question, prediction, feedback, annotator) to records by qid, else by
    question text. Returns {qid: row} and the problems (unmatched or malformed rows), never dropped silently."""
    by_qid = {r["qid"]: r for r in records}
    by_question = {question_key(r["question"]): r["qid"] for r in records}
    matched, problems = {}, []
    for row in rows:
        where = row.get("_where", "row")
        text = (row.get("feedback") or "").strip()
        if not text:
            problems.append(f"{where}: no feedback text")
            continue
        qid = row.get("qid") if row.get("qid") in by_qid else by_question.get(question_key(row.get("question")))
        if qid is None:
            problems.append(f"{where}: matches no question by qid or question text")
            continue
        matched.setdefault(qid, dict(row, feedback=text))  # the first feedback per question wins
    return matched, problems


def check_human_fraction(value: float, what: str = "--human-fraction") -> float:
    """The share of human feedback is a fraction: the one check every entry point uses."""
    if not 0.0 <= value <= 1.0:
        raise LaffiError(f"{what} must be between 0 and 1, not {value}.")
    return value


def mix_feedback(ai_records: list[dict], human: dict[str, dict], human_fraction: float,
                 seed: int = 0) -> tuple[list[dict], dict]:
    """The hybrid training set: a fraction of examples carry human feedback (as far as there is any), the rest AI
    feedback. Every record keeps its feedback_source. Returns (records, {"human", "ai", "requested_fraction"})."""
    check_human_fraction(human_fraction)
    want = round(human_fraction * len(ai_records))
    candidates = [r["qid"] for r in ai_records if r["qid"] in human]
    chosen = set(random.Random(seed).sample(candidates, min(want, len(candidates))))
    out = []
    for rec in ai_records:
        if rec["qid"] in chosen:
            h = human[rec["qid"]]
            new = dict(rec, feedback=h["feedback"], feedback_source="human",
                       annotator=str(h.get("annotator") or "anonymous"))
            if h.get("prediction"):  # the human judged this answer: train on that one
                new["prediction"] = h["prediction"]
            out.append(new)
        else:
            out.append(rec)
    counts = Counter(r["feedback_source"] for r in out)
    return out, {"human": counts.get("human", 0), "ai": len(out) - counts.get("human", 0),
                 "requested_fraction": human_fraction, "available_human": len(candidates)}


def annotate_with_human(records: list[dict], annotator: str = "reference", seed: int = 0,
                        lm: LanguageModel | None = None,
                        on_fail: str = "replace", human: str | None = None, human_fraction: float = 0.0,
                        on_event: OnEvent | None = None) -> tuple[list[dict], dict]:
    """AI feedback on every record, then the hybrid mix with human feedback from `human` (CSV, JSONL or the app's
    SQLite store) when given; report["human_problems"] lists rows that were malformed or matched no question."""
    from laffi.feedback.store import read_human_feedback

    annotated, report = annotate(records, annotator, seed=seed, lm=lm, on_fail=on_fail, on_event=on_event)
    if human:
        rows, bad = read_human_feedback(human)
        matched, unmatched = match_human_feedback(annotated, rows)
        annotated, report["mix"] = mix_feedback(annotated, matched, human_fraction, seed)
        report["human_problems"] = bad + unmatched
    return annotated, report


# --- the app's collected feedback as training records (the demo loop) ---------------------------------------
FEEDBACK_TITLE = "collected feedback"  # the `title` of training records made from feedback rows
_NO_ANSWER_WORDS = {"no answer", "none", "unanswerable", "n/a", "-"}


def feedback_examples(rows: list[dict], seed: int = 0) -> tuple[list[dict], dict]:
    """Training records from feedback rows (the store's, or its JSONL export): one LaFFi record per usable row
    (prediction = the answer it judged, feedback = the critique, or the annotator's format from the rating and
    the correct answer), with `gold_known` where the right answer is known (then also an SFT row). Returns
    (records, report): rows, sessions, raters, LaFFi and SFT rows, skipped rows with the reason."""
    import random

    rng = random.Random(seed)
    records, skipped = [], []
    for r in rows:
        rid, where = r.get("id"), f"feedback #{r.get('id')}"
        context, question = (r.get("context") or "").strip(), (r.get("question") or "").strip()
        critique, correct = (r.get("critique") or "").strip(), (r.get("correct_answer") or "").strip()
        answer, thumbs = (r.get("answer") or "").strip(), r.get("thumbs")
        if not context or not question:
            skipped.append(f"{where}: no passage or question")
            continue
        gold = None  # the right answers, where someone said what they are ([] = the passage does not answer)
        if correct:
            gold = [] if correct.lower().rstrip(".") in _NO_ANSWER_WORDS else [correct]
        elif thumbs == 1:
            gold = [answer] if answer else []
        record = {"qid": f"feedback-{rid}", "title": FEEDBACK_TITLE, "context": context, "question": question,
                  "answers": gold or [], "answer_starts": [context.find(g) for g in gold or []],
                  "prediction": answer, "feedback_row_id": rid, "session_id": r.get("session_id"),
                  "annotator": r.get("annotator") or "anonymous", "gold_known": gold is not None,
                  "draft_kind": "own"}
        if critique:
            record.update(feedback=critique, feedback_source="human")
        elif gold is not None:
            text, category = reference_feedback(record, rng)
            record.update(feedback=text, feedback_source="human-rating", category=category)
        else:
            skipped.append(f"{where}: a 👎 without a critique or the correct answer says something is wrong, not "
                           "what")
            continue
        records.append(record)
    report = {"rows": len(rows), "usable": len(records),
              "sessions": len({r["session_id"] for r in records if r.get("session_id")}),
              "raters": len({r["annotator"] for r in records}),
              "laffi_rows": len(records), "sft_rows": sum(r["gold_known"] for r in records),
              "critiques": sum(r["feedback_source"] == "human" for r in records),
              "from_ratings": sum(r["feedback_source"] == "human-rating" for r in records),
              "skipped": skipped}
    return records, report


def mix_with_feedback(path: str | Path, ai: list[dict], fraction: float, seed: int = 0, log=print) -> list[dict]:
    """The collected feedback rows of `path` plus as many of the AI-annotated records `ai` as keep the feedback
    at `fraction` of the whole (fraction 1: the feedback alone)."""
    import random

    from laffi.feedback.store import read_feedback_rows

    fb, report = feedback_examples(read_feedback_rows(path), seed=seed)
    for p in report["skipped"][:10]:
        log(f"warning: skipped {p}")
    if not fb:
        raise LaffiError(f"{path} holds no usable feedback yet: give feedback in the app's Ask tab (a "
                         "critique, or a rating with the correct answer), then train.")
    keep = 0 if fraction >= 1 else min(len(ai), round(len(fb) * (1 - fraction) / max(fraction, 1e-9)))
    chosen = random.Random(seed).sample(ai, keep) if keep < len(ai) else list(ai)
    log(f"{report['usable']} feedback rows from {report['sessions']} sessions and {report['raters']} raters "
        f"({report['sft_rows']} with a known right answer)" + (f" + {len(chosen)} AI-annotated SQuAD records"
                                                               if fraction < 1 else ""))
    return fb + chosen

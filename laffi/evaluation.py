"""Answer SQuAD v2 questions with several variants (one mixed batch) and score them with the official metric.

Usage:
    metrics = evaluate_variants(lm, examples, ["base", "sft"], GenerationConfig(), out_dir="runs/eval",
                                feedback=True)   # also self-feedback: revised F1 and verdict agreement

Writes, under out_dir:
    <variant>/predictions.json   {qid: answer} in the official format ("" = no answer)
    <variant>/examples.jsonl     qid, title, question, gold answers, prediction, raw reply, em, f1
                                 (+ feedback, verdict, revised_answer, revised_f1 with feedback=True)
    metrics.json                 {"n": N, "variants": {variant: {exact, f1, HasAns_exact, ...}}, "config": {...}}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from laffi.generation import GenerationConfig, answer_questions
from laffi.selffeedback import self_feedback
from laffi.squad_metric import score_one, squad_v2_scores


def write_atomic(path: Path, write) -> None:
    """Call write(file) on a temporary file beside `path`, flush it to disk, then rename it over `path`: a crash
    or an error at any point leaves `path` as it was (absent, or the previous complete file), never half written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n"))


def write_jsonl_atomic(path: Path, rows) -> None:
    write_atomic(path, lambda f: f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def feedback_metrics(examples, answers, feedbacks) -> dict:
    """revised_f1/exact: SQuAD scores of the self-revised answers; verdict_agreement: % of questions where the
    predicted verdict (correct or not) matches whether the answer was exactly right (no verdict = disagreement)."""
    revised = squad_v2_scores(examples, {ex.qid: fb.revised_answer for ex, fb in zip(examples, feedbacks)})
    agree = parsed = 0
    for ex, a, fb in zip(examples, answers, feedbacks):
        if fb.verdict is not None:
            parsed += 1
            agree += (fb.verdict == "correct") == bool(score_one(ex.answers, a.text)[0])
    n = max(len(examples), 1)
    return {"revised_exact": revised["exact"], "revised_f1": revised["f1"],
            "verdict_agreement": 100.0 * agree / n, "verdict_parsed": 100.0 * parsed / n,
            "revised_share": 100.0 * sum(fb.revised for fb in feedbacks) / n}


def evaluate_variants(lm, examples, variants: list[str], gen: GenerationConfig | None = None,
                      out_dir: str | os.PathLike | None = None,
                      progress: Callable[[int, int], None] | None = None, feedback: bool = False) -> dict:
    """Score every variant on `examples`; returns {"n", "variants": {v: metrics}} and writes files if out_dir.
    progress(done, total) counts answers, then (with feedback) feedbacks, over one total."""
    gen = gen or GenerationConfig()
    pairs = [(ex.context, ex.question) for ex in examples]
    total = len(pairs) * len(variants) * (2 if feedback else 1)
    answers = answer_questions(lm, pairs, variants, gen,
                               progress and (lambda done, _: progress(done, total)))
    feedbacks = None
    if feedback:
        offset = len(pairs) * len(variants)
        feedbacks = self_feedback(lm, pairs, answers, progress=progress and (
            lambda done, _: progress(offset + done, total)))
    result = {"n": len(examples), "variants": {}}
    for v in variants:
        preds = {ex.qid: a.text for ex, a in zip(examples, answers[v])}
        result["variants"][v] = squad_v2_scores(examples, preds)
        if feedbacks:
            result["variants"][v].update(feedback_metrics(examples, answers[v], feedbacks[v]))
        if out_dir is not None:
            rows = []
            for i, (ex, a) in enumerate(zip(examples, answers[v])):
                em, f1 = score_one(ex.answers, a.text)
                row = {"qid": ex.qid, "title": ex.title, "question": ex.question,
                       "gold_answers": list(ex.answers), "prediction": a.text, "raw": a.raw, "em": em, "f1": f1}
                if feedbacks:
                    fb = feedbacks[v][i]
                    row.update(feedback=fb.text, verdict=fb.verdict, revised_answer=fb.revised_answer,
                               revised_f1=score_one(ex.answers, fb.revised_answer)[1])
                rows.append(row)
            write_json_atomic(Path(out_dir) / v / "predictions.json", preds)
            write_jsonl_atomic(Path(out_dir) / v / "examples.jsonl", rows)
    if out_dir is not None:
        record = dict(result, config={"base": lm.config.base, "generation": asdict(gen), "feedback": feedback,
                                      "qids": [ex.qid for ex in examples]})
        write_json_atomic(Path(out_dir) / "metrics.json", record)
    return result

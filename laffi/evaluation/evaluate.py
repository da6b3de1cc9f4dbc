"""Answer SQuAD v2 questions with several variants (mixed batches) and score them with the official metric, with
95 % bootstrap intervals, the abstain rate, and - for feedback - verdict agreement and balanced verdict accuracy.

Usage:
    metrics = evaluate_variants(lm, examples, ["base", "sft", "laffi"], GenerationConfig(), out_dir="runs/eval",
                                feedback=True)   # also every variant's feedback: F1 via feedback, verdicts

Each variant's *shown* answer follows its AnswerPath (laffi.inference.selffeedback): direct for most, draft -> feedback
-> named answer for LaFFi adapters that ask for it. Both paths are scored whenever both ran:
    exact, f1, HasAns_f1, NoAns_exact, abstain           the shown answer (what the app shows)
    direct_*                                             the reply to the QA prompt
    revised_*                                            the answer the feedback names ("F1 via feedback")
    verdict_agreement, balanced_verdict_accuracy          does the feedback's verdict match the draft's EM?
    span_HasAns_f1                                       its best span on answerable questions (the span skill)
    auc                                                  answerability: NoAns ranked above HasAns by na_prob
    best_f1, best_f1_thresh                              the official best threshold - optimistic: chosen on
                                                         the very questions it scores
    threshold, calibrated                                the threshold the shown answer used, and whether it
                                                         was chosen on validation (calibration.json)
    ci                                                   {metric: [low, high]}, 95 % bootstrap over questions
and a row for the trivial policy, ALWAYS_NO_ANSWER, that every score is read against.

Writes, under out_dir:
    <variant>/predictions.json           {qid: shown answer} in the official format ("" = no answer)
    <variant>/na_probs.json              {qid: no-answer probability} (the official --na-prob-file)
    <variant>/span_predictions.json      {qid: best non-empty span}: with na_probs.json, what the official
                                         script needs to choose a threshold
    <variant>/predictions_direct.json    the direct answers; predictions_feedback.json: via feedback (if run)
    <variant>/examples.jsonl             per question: gold, shown/direct answers, draft, feedback, em/f1 of each
    metrics.json                         {"n": N, "variants": {variant: {...}}, "config": {...}}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from laffi.evaluation.stats import balanced_accuracy_ci, balanced_verdict_accuracy, bootstrap_ci
from laffi.inference.answerability import ALWAYS_NO_ANSWER, answerability_auc
from laffi.inference.events import OnEvent
from laffi.inference.generation import GenerationConfig
from laffi.inference.selffeedback import answer_all
from laffi.inference.surface import LanguageModel
from laffi.io import write_json_atomic, write_jsonl_atomic
from laffi.squad.metric import score_one, squad_v2_scores

CI_KEYS = ("exact", "f1", "HasAns_f1", "NoAns_exact", "abstain")
RESULT_FILE = "metrics.json"  # an evaluation folder's numbers (out_dir/metrics.json)


def scored(examples, answers: list[str], prefix: str = "") -> tuple[dict, dict, dict]:
    """(metrics, 95 % intervals, per-question values) of one list of answers: official scores and abstain rate."""
    preds = {ex.qid: a for ex, a in zip(examples, answers)}
    m = squad_v2_scores(examples, preds)
    per = {"exact": [], "f1": [], "HasAns_f1": [], "NoAns_exact": [], "abstain": []}
    for ex, a in zip(examples, answers):
        em, f1 = score_one(ex.answers, a)
        per["exact"].append(em)
        per["f1"].append(f1)
        per["abstain"].append(float(not a.strip()))
        per["HasAns_f1" if ex.answers else "NoAns_exact"].append(f1 if ex.answers else em)
    m["abstain"] = 100.0 * sum(per["abstain"]) / max(len(answers), 1)
    ci = {}
    for key in CI_KEYS:
        interval = bootstrap_ci(per[key])
        if interval is not None:
            ci[prefix + key] = [round(100 * interval[1], 2), round(100 * interval[2], 2)]
    keep = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "abstain")
    return {prefix + k: v for k, v in m.items() if k in keep}, ci, {prefix + k: v for k, v in per.items()}


def feedback_metrics(examples, drafts: list[str], feedbacks) -> dict:
    """Verdicts of the feedback on `drafts` (answer texts): verdict_agreement = % of questions whose verdict
    (correct or not) matches whether the draft was exactly right (no verdict = disagreement);
    balanced_verdict_accuracy = mean of the right drafts' share called correct and the wrong drafts' share not
    called correct (chance: 50, whatever the mix), its bootstrap interval under "ci"; revised_exact/f1: SQuAD
    scores of the answers it names."""
    revised = squad_v2_scores(examples, {ex.qid: fb.revised_answer for ex, fb in zip(examples, feedbacks)})
    right = [bool(score_one(ex.answers, d)[0]) for ex, d in zip(examples, drafts)]
    called = [fb.verdict == "correct" for fb in feedbacks]
    parsed = [fb.verdict is not None for fb in feedbacks]
    agree = sum(p and c == r for p, c, r in zip(parsed, called, right))
    n = max(len(examples), 1)
    bva = balanced_verdict_accuracy(right, called)
    interval = balanced_accuracy_ci(right, called)
    return {"revised_exact": revised["exact"], "revised_f1": revised["f1"],
            "ci": {} if interval is None else {"balanced_verdict_accuracy": [round(x, 2) for x in interval]},
            "verdict_agreement": 100.0 * agree / n, "verdict_parsed": 100.0 * sum(parsed) / n,
            "balanced_verdict_accuracy": bva, "drafts_right": 100.0 * sum(right) / n,
            "revised_share": None if any(fb.revised is None for fb in feedbacks)  # (not stored: pooled runs)
            else 100.0 * sum(fb.revised for fb in feedbacks) / n}


def precision_record(lm: LanguageModel) -> dict | None:
    """The base weights' precision and why (laffi.inference.precision), as every metrics file records it."""
    return lm.precision.as_dict() if lm.precision is not None else None


def evaluate_variants(lm: LanguageModel, examples, variants: list[str], gen: GenerationConfig | None = None,
                      out_dir: str | os.PathLike | None = None, on_event: OnEvent | None = None,
                      feedback: bool = False, paths: dict | None = None, direct: dict | None = None) -> dict:
    """Score every variant on `examples`; returns {"n", "variants": {v: metrics}, "per_question": {v: values},
    "direct": {v: [Answer]}} and writes files if out_dir. feedback=True: every variant also predicts feedback on
    its draft (else only variants whose path needs it). `direct` may bring direct answers already made. on_event:
    every generated row's events (laffi.inference.events; count_done makes a progress bar of them)."""
    gen = gen or GenerationConfig()
    pairs = [(ex.context, ex.question) for ex in examples]
    results = answer_all(lm, pairs, variants, gen, feedback=feedback, paths=paths, on_event=on_event, direct=direct)
    out = {"n": len(examples), "variants": {}, "per_question": {}, "precision": precision_record(lm),
           "qids": [ex.qid for ex in examples], "has_answer": [bool(ex.answers) for ex in examples],
           "direct": {v: [r.direct for r in results[v]] for v in variants}, "results": results}
    for v in variants:
        rows = results[v]
        m, per = variant_metrics(examples, rows, rows[0].path.label() if rows else "direct")
        out["variants"][v] = m
        out["per_question"][v] = per
        if out_dir is not None:
            _write_variant(Path(out_dir) / v, examples, rows)
    if variants:
        out["variants"][ALWAYS_NO_ANSWER], out["per_question"][ALWAYS_NO_ANSWER] = trivial_metrics(examples)
    if out_dir is not None:
        record = {"n": out["n"], "variants": out["variants"], "config": {
            "base": lm.config.base, "generation": asdict(gen), "feedback": feedback,
            "qids": [ex.qid for ex in examples]}, "precision": precision_record(lm)}
        write_json_atomic(Path(out_dir) / RESULT_FILE, record)
    return out


def variant_metrics(examples, rows, label: str) -> tuple[dict, dict]:
    """(metrics with their intervals under "ci", per-question values) of one variant's Results on `examples`:
    the shown, direct and via-feedback answers, the feedback's verdicts and the answerability scores, whichever
    ran. label: how the variant answers (AnswerPath.label())."""
    fbs = [r.feedback for r in rows]
    answer_lists = {"": [r.answer for r in rows], "direct_": [r.direct.text for r in rows]}
    if rows and all(fbs):
        answer_lists["revised_"] = [fb.revised_answer for fb in fbs]
    m, ci, per = {"answer_path": label}, {}, {}
    for prefix, answers in answer_lists.items():
        metrics, intervals, values = scored(examples, answers, prefix)
        m.update(metrics)
        ci.update(intervals)
        per.update(values)
    if rows and all(fbs):
        verdicts = feedback_metrics(examples, [r.draft for r in rows], fbs)
        ci.update(verdicts.pop("ci"))
        m.update(verdicts, drafts_by=rows[0].draft_by)
    if rows and all(r.na_prob is not None for r in rows):
        m.update(answerability_metrics(examples, rows))
        spans = [r.span if r.span is not None else r.answer for r in rows]
        metrics, intervals, values = scored(examples, spans, "span_")
        m.update({k: metrics[k] for k in ("span_HasAns_f1", "span_f1") if k in metrics})
        ci.update({k: v for k, v in intervals.items() if k == "span_HasAns_f1"})
        per["span_HasAns_f1"] = values.get("span_HasAns_f1", [])
    m["ci"] = ci
    return m, per


def trivial_metrics(examples) -> tuple[dict, dict]:
    """The always-"no answer" policy's metrics and per-question values: the row every score is read against."""
    nothing, ci, per = scored(examples, [""] * len(examples))
    return {"answer_path": "no model", **nothing, "ci": ci}, per


def answerability_metrics(examples, rows) -> dict:
    """AUC of na_prob, the official best threshold on these questions (optimistic) and the threshold used."""
    spans = {ex.qid: (r.span if r.span is not None else r.answer) for ex, r in zip(examples, rows)}
    probs = {ex.qid: r.na_prob for ex, r in zip(examples, rows)}
    official = squad_v2_scores(examples, spans, na_probs=probs)
    auc = answerability_auc(examples, [r.na_prob for r in rows])
    return {"auc": auc, "best_f1": official["best_f1"],
            "best_f1_thresh": official["best_f1_thresh"], "threshold": rows[0].threshold if rows else None,
            "calibrated": bool(rows) and rows[0].threshold is not None}


def row_span(row: dict) -> str:
    """A line of <variant>/examples.jsonl's best span, shown or not: its span, or (a variant without one, written
    before spans existed) its direct answer."""
    return row.get("span") if row.get("span") is not None else row.get("direct", "")


def _write_variant(folder: Path, examples, rows) -> None:
    lines = []
    for ex, r in zip(examples, rows):
        em, f1 = score_one(ex.answers, r.answer)
        d_em, d_f1 = score_one(ex.answers, r.direct.text)
        line = {"qid": ex.qid, "title": ex.title, "question": ex.question, "gold_answers": list(ex.answers),
                "prediction": r.answer, "em": em, "f1": f1, "direct": r.direct.text, "raw": r.direct.raw,
                "direct_em": d_em, "direct_f1": d_f1, "answer_path": r.path.label(), "path_kind": r.path.kind}
        if r.na_prob is not None:
            line.update(span=r.span, na_prob=r.na_prob, threshold=r.threshold)
        if r.candidates is not None:  # a chooser: its verdicts' na_prob, and its direct reply's beside it
            line.update(candidates=r.candidates, direct_na_prob=r.direct.na_prob)
        if r.feedback is not None:
            line.update(draft=r.draft, draft_by=r.draft_by, feedback=r.feedback.text, verdict=r.feedback.verdict,
                        revised_answer=r.feedback.revised_answer,
                        revised_f1=score_one(ex.answers, r.feedback.revised_answer)[1])
        lines.append(line)
    write_json_atomic(folder / "predictions.json", {ex.qid: r.answer for ex, r in zip(examples, rows)})
    write_json_atomic(folder / "predictions_direct.json", {ex.qid: r.direct.text for ex, r in zip(examples, rows)})
    if rows and all(r.na_prob is not None for r in rows):
        write_json_atomic(folder / "na_probs.json", {ex.qid: r.na_prob for ex, r in zip(examples, rows)})
        write_json_atomic(folder / "span_predictions.json", {ex.qid: r.span or "" for ex, r in zip(examples, rows)})
    if rows and all(r.feedback is not None for r in rows):
        write_json_atomic(folder / "predictions_feedback.json",
                          {ex.qid: r.feedback.revised_answer for ex, r in zip(examples, rows)})
    write_jsonl_atomic(folder / "examples.jsonl", lines)


def calibrate_variants(lm: LanguageModel, examples, variants: list[str], gen: GenerationConfig | None = None,
                       chosen_on: dict | None = None, out_dir=None, on_event: OnEvent | None = None,
                       write: bool = True) -> dict:
    """Choose every variant's no-answer threshold on these (validation) questions and, with write, store it in
    its adapter folder (the base model's beside the adapters). A verify-path variant also chooses how its
    na_prob is made from its verdicts (laffi.inference.answerability.NA_PROB_KINDS), by the F1 it gives here.
    Returns {variant: Calibration}."""
    from laffi.inference.answerability import (base_calibration_path, choose_threshold, kept_threshold,
                                               read_calibration, write_calibration)
    from laffi.inference.models import BASE_VARIANT
    from laffi.inference.selffeedback import candidates_na_prob

    result = evaluate_variants(lm, examples, variants, gen, out_dir=out_dir, on_event=on_event)
    chosen = {}
    for v in variants:
        rows = result["results"][v]
        if not rows or any(r.na_prob is None for r in rows):
            continue
        spans = [r.span or "" for r in rows]
        if rows[0].candidates is not None:
            options = []
            for how in ("rank",) if rows[0].path.kind == "rank" else ("span", "contrast"):
                na = [candidates_na_prob(r.candidates, how) for r in rows]
                options.append(choose_threshold(examples, spans, na, how, chosen_on))
            cal = max(options, key=lambda c: c.validation["f1"])
            na = [candidates_na_prob(r.candidates, cal.na_prob) for r in rows]
        else:
            na = [r.na_prob for r in rows]
            cal = choose_threshold(examples, spans, na, "p_abstain", chosen_on)
        if v == BASE_VARIANT:
            cal.base = lm.config.base
        cal.precision = lm.precision.dtype if lm.precision is not None else None
        target = base_calibration_path(lm) if v == BASE_VARIANT else lm.adapters[v]
        if cal.precision not in (None, "float32") and target is not None:  # float32's, where it does as well
            cal = kept_threshold(examples, spans, na, cal, read_calibration(target, precision="float32"))
        chosen[v] = cal
        if write:
            if target is not None:
                write_calibration(target, cal)
    return chosen


def read_base_answers(path: Path, examples, threshold: float | None = None) -> list | None:
    """The base model's direct answers to `examples` from an earlier evaluation's cache, decided again at today's
    threshold (the cache keeps each best span and na_prob); None when absent or written before na_prob existed."""
    from laffi.inference.answerability import decide
    from laffi.inference.generation import Answer

    try:
        stored = json.loads(path.read_text())
        rows = [stored[ex.qid] for ex in examples]
        return [Answer(text=decide(span, na, threshold), raw=raw, span=span, na_prob=na) for _, raw, span, na in rows]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def base_answers_cache(answers) -> list:
    """What read_base_answers reads back, for one answer."""
    return [answers.text, answers.raw, answers.span, answers.na_prob]

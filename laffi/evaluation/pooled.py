"""Evaluation folders read as one: an evaluation run article by article (so that a stopped run resumes at the next
article) scored as if it had been one run over all their questions.

Usage:
    result = pool_folders(["runs/eval/Normans", "runs/eval/Warsaw"], compare=[("laffi", "sft")])
    result["variants"]["laffi"]["f1"], result["variants"]["laffi"]["ci"]["f1"], result["comparisons"]
    AdapterFolder("adapters/laffi").write(SELF_FEEDBACK, self_feedback_record(result, "laffi", "eval", source))

Why not average the folders' metrics: intervals shrink only when the questions are resampled together, paired
differences need each question's score under both variants, and AUC and the best threshold are not means of the
articles' values. So every question's stored row (<variant>/examples.jsonl) is read back and scored again by the
very functions an evaluation uses (laffi.evaluation.evaluate.variant_metrics).
"""

from __future__ import annotations

import json
from pathlib import Path

from laffi.errors import LaffiError
from laffi.evaluation.evaluate import RESULT_FILE, trivial_metrics, variant_metrics
from laffi.evaluation.report import comparisons
from laffi.inference.answerability import ALWAYS_NO_ANSWER
from laffi.inference.generation import Answer
from laffi.inference.selffeedback import Feedback, Result
from laffi.io import read_jsonl
from laffi.squad.data import QAExample


def stored_result(line: dict) -> Result:
    """One examples.jsonl row as the Result it was written from (what scoring reads of it; the AnswerPath is
    given by its label, and whether the feedback named an answer is not stored)."""
    feedback = None
    if "feedback" in line:
        feedback = Feedback(text=line["feedback"], verdict=line["verdict"], revised_answer=line["revised_answer"],
                            revised=None)
    return Result(answer=line["prediction"], direct=Answer(text=line["direct"], raw=line.get("raw", "")),
                  path=None, draft=line.get("draft"), draft_by=line.get("draft_by"), feedback=feedback,
                  span=line.get("span"), na_prob=line.get("na_prob"), threshold=line.get("threshold"),
                  candidates=line.get("candidates"))


def read_folder(folder: Path) -> tuple[dict, dict[str, list[dict]]]:
    """(metrics.json, {variant: examples.jsonl rows in the evaluation's question order}) of one evaluation."""
    try:
        record = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise LaffiError(f"{folder} is not a finished evaluation (no {RESULT_FILE} in it).") from e
    rows = {}
    for v in record["variants"]:
        path = folder / v / "examples.jsonl"
        if v != ALWAYS_NO_ANSWER and path.is_file():
            rows[v] = read_jsonl(path)
    return record, rows


def pool_folders(folders: list[str | Path], compare: list[tuple[str, str]] = ()) -> dict:
    """{"n", "variants": {v: metrics with "ci"}, "per_question", "comparisons", "parts": [per folder: name, n,
    each variant's F1 and abstain rate], "precision": [per folder]} over every question of `folders`. Variants
    are those every folder evaluated; a question in two folders is an error (it would count twice)."""
    folders = [Path(f) for f in folders]
    if not folders:
        raise LaffiError("Name at least one evaluation folder to pool.")
    read = [read_folder(f) for f in folders]
    variants = [v for v in read[0][1] if all(v in rows for _, rows in read)]
    if not variants:
        raise LaffiError("These evaluations have no variant in common.")
    lines = {v: [line for _, rows in read for line in rows[v]] for v in variants}
    qids = [line["qid"] for line in lines[variants[0]]]
    if len(set(qids)) != len(qids):
        raise LaffiError("Some questions are in more than one of these evaluations; each must be counted once.")
    for v in variants[1:]:
        if [line["qid"] for line in lines[v]] != qids:
            raise LaffiError(f"{v} was not scored on the same questions as {variants[0]} in every folder.")
    examples = [QAExample(qid=line["qid"], title=line.get("title", ""), context="", question=line.get("question", ""),
                          answers=tuple(line["gold_answers"])) for line in lines[variants[0]]]
    out = {"n": len(examples), "variants": {}, "per_question": {}}
    for v in variants:
        out["variants"][v], out["per_question"][v] = variant_metrics(
            examples, [stored_result(line) for line in lines[v]], lines[v][0].get("answer_path", "direct"))
    out["variants"][ALWAYS_NO_ANSWER], out["per_question"][ALWAYS_NO_ANSWER] = trivial_metrics(examples)
    out["comparisons"] = comparisons(out["per_question"], variants, list(compare))
    out["parts"] = [{"name": f.name, "n": record["n"],
                     **{v: {k: record["variants"][v].get(k) for k in ("f1", "HasAns_f1", "abstain")}
                        for v in [*variants, ALWAYS_NO_ANSWER] if v in record["variants"]}}
                    for f, (record, _) in zip(folders, read)]
    out["precision"] = [record.get("precision") for record, _ in read]
    return out


def self_feedback_record(result: dict, variant: str, articles: str, source: str) -> dict | None:
    """What an adapter folder's self_feedback.json keeps of an evaluation with feedback on its own answers: the
    verdicts' balanced accuracy with its interval, how often the feedback gave a verdict at all, on how many
    questions of which article split, and where the evaluation is (a path in the repository). None when the
    variant's feedback was not evaluated."""
    m = result["variants"].get(variant) or {}
    if m.get("verdict_parsed") is None:
        return None
    return {"balanced_verdict_accuracy": m.get("balanced_verdict_accuracy"),
            "ci": (m.get("ci") or {}).get("balanced_verdict_accuracy"), "verdicts_given": m["verdict_parsed"],
            "drafts_right": m.get("drafts_right"), "drafts_by": m.get("drafts_by"), "n": result["n"],
            "eval_articles": articles, "source": source}

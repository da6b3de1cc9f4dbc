"""Answer SQuAD v2 questions with several variants (one mixed batch) and score them with the official metric.

Usage:
    metrics = evaluate_variants(lm, examples, ["base", "sft"], GenerationConfig(), out_dir="runs/eval")

Writes, under out_dir:
    <variant>/predictions.json   {qid: answer} in the official format ("" = no answer)
    <variant>/examples.jsonl     qid, title, question, gold answers, prediction, raw reply, em, f1
    metrics.json                 {"n": N, "variants": {variant: {exact, f1, HasAns_exact, ...}}, "config": {...}}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from laffi.generation import GenerationConfig, answer_questions
from laffi.squad_metric import score_one, squad_v2_scores


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON through a temporary file and a rename, so a crash never leaves half a file under `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl_atomic(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def evaluate_variants(lm, examples, variants: list[str], gen: GenerationConfig | None = None,
                      out_dir: str | os.PathLike | None = None,
                      progress: Callable[[int, int], None] | None = None) -> dict:
    """Score every variant on `examples`; returns {"n", "variants": {v: metrics}} and writes files if out_dir."""
    gen = gen or GenerationConfig()
    answers = answer_questions(lm, [(ex.context, ex.question) for ex in examples], variants, gen, progress)
    result = {"n": len(examples), "variants": {}}
    for v in variants:
        preds = {ex.qid: a.text for ex, a in zip(examples, answers[v])}
        result["variants"][v] = squad_v2_scores(examples, preds)
        if out_dir is not None:
            rows = []
            for ex, a in zip(examples, answers[v]):
                em, f1 = score_one(ex.answers, a.text)
                rows.append({"qid": ex.qid, "title": ex.title, "question": ex.question,
                             "gold_answers": list(ex.answers), "prediction": a.text, "raw": a.raw,
                             "em": em, "f1": f1})
            write_json_atomic(Path(out_dir) / v / "predictions.json", preds)
            write_jsonl_atomic(Path(out_dir) / v / "examples.jsonl", rows)
    if out_dir is not None:
        record = dict(result, config={"base": lm.config.base, "generation": asdict(gen),
                                      "qids": [ex.qid for ex in examples]})
        write_json_atomic(Path(out_dir) / "metrics.json", record)
    return result

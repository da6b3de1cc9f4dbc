"""The stage bodies, each written once: annotate (drafts, AI and human feedback, the app's collected feedback) and
train (here, or on several processes), and what `train --data` reads. laffi.pipeline.stages orders and caches them for a
pipeline, a study or an app job; `laffi annotate` and `laffi train` call them directly.

Usage:
    records, report = annotate_records(predictions, "reference", seed=0, drafts="own+synthetic")
    records = records_for_training("data/feedback.sqlite")       # or annotated JSONL, or SQuAD questions
    result = train_records(lambda: records, TrainConfig(method="laffi"), data_flags=[...])  # TrainResult
"""

from __future__ import annotations

from pathlib import Path

from laffi.io import read_jsonl


def annotate_records(records: list[dict], annotator: str = "reference", seed: int = 0, drafts: str = "own",
                     synthetic_per_question: int = 1, lm=None, on_fail: str = "replace", human: str | None = None,
                     human_fraction: float = 0.0, feedback_rows: str | None = None, on_event=None,
                     log=print) -> tuple[list[dict], dict]:
    """Stage 2, written once (the pipeline, `laffi annotate` and the app's jobs): drafts to judge (laffi.feedback.drafts),
    AI feedback mixed with human feedback that matches a question, then the app's collected feedback rows at
    the human fraction (laffi.feedback.annotation.mix_with_feedback). on_event: the LLM annotator's
    GenerationEvents (laffi.inference.events). Returns (records, report)."""
    from laffi.feedback.annotation import annotate_with_human, mix_with_feedback
    from laffi.feedback.drafts import add_drafts

    records, mix = add_drafts(records, drafts, seed=seed, k=synthetic_per_question)
    if records:
        log(f"annotate: {annotator} annotator on {len(records)} drafts ({drafts}: {mix})"
            + (f", human fraction {human_fraction}" if human else ""))
    annotated, report = annotate_with_human(records, annotator, seed=seed, lm=lm, on_fail=on_fail, human=human,
                                            human_fraction=human_fraction, on_event=on_event)
    report["drafts"] = {"mix": drafts, "per_kind": mix}
    for p in report.get("human_problems", [])[:10]:
        log(f"warning: human feedback {p}")
    if feedback_rows:
        annotated = mix_with_feedback(feedback_rows, annotated, human_fraction, seed, log)
    return annotated, report


def records_for_training(data: str, articles: str | None = None, limit: int | None = None, seed: int = 0,
                         log=print) -> list[dict]:
    """What `train --data` reads: the app's feedback store or its export (every feedback row a training row),
    records written by `predict`/`annotate` (JSONL with a prediction per row), or SQuAD questions (a file or
    dataset id, narrowed by articles/limit) for SFT, which needs no prediction."""
    from laffi.feedback.annotation import mix_with_feedback
    from laffi.feedback.store import is_feedback_file
    from laffi.squad.data import select_data

    if is_feedback_file(data):  # the collected feedback alone
        return mix_with_feedback(data, [], 1.0, seed, log)
    if str(data).endswith(".jsonl") and Path(data).is_file():
        rows = read_jsonl(data)
        if rows and isinstance(rows[0], dict) and ("prediction" in rows[0] or "feedback" in rows[0]):
            return rows
    examples, problems = select_data(data, articles, limit, seed)
    for p in problems[:10]:
        log(f"warning: skipped {p}")
    return [e.to_dict() for e in examples]


def train_records(records, tcfg, data_flags: list[str], run_key: str | None = None, resume: bool = True,
                  callbacks=(), log=print, extra_files: dict | None = None):
    """Stage 3, written once: one TrainConfig trained here (records() gives the records), or on several
    processes through `accelerate launch`, which runs `laffi train` with data_flags on every rank. Settings the
    model can't use are refused first (laffi.training.trainer.preflight). Returns the TrainResult."""
    from laffi.training.distributed import needs_launch, run_training
    from laffi.training.trainer import preflight, train_adapter

    preflight(tcfg)
    if needs_launch(tcfg):  # Stop reaches every rank
        return run_training(tcfg, data_flags, run_key, resume, log)
    return train_adapter(records(), tcfg, resume=resume, extra_callbacks=callbacks, run_key=run_key,
                         extra_files=extra_files)

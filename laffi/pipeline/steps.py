"""The stage bodies, each written once, and their inputs: annotate (drafts, AI and human feedback, the app's collected
feedback) and train (here, or on several processes), and what `train --data` reads. The input dataclasses are also
the flags of `laffi predict|annotate|train` (laffi.cli) and render back into them (laffi.commandline), so the
pipeline's shown commands, a launch's ranks and the CLI all read the same fields. laffi.pipeline.stages orders and
caches the stages for a pipeline, a study or an app job; `laffi annotate` and `laffi train` call them directly.

Usage:
    records, report = annotate_records(predictions, AnnotateArgs(predictions="p.jsonl", out="a.jsonl"))
    data = TrainDataArgs(data="data/feedback.sqlite")             # or annotated JSONL, or SQuAD questions
    result = train_records(lambda: records_for_training(data), TrainConfig(method="laffi"), data)  # TrainResult
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from laffi.commandline import flags
from laffi.errors import LaffiError, check_at_least_one
from laffi.io import read_jsonl


@dataclass
class PredictArgs:
    out: str = field(metadata={"help": "Output JSONL (a dataset loadable with `datasets`)."})
    variant: str = field(default="base", metadata={"help": "Which variant answers."})
    from_eval: str | None = field(default=None, metadata={
        "help": "Comma-separated evaluation folders (globs allowed) whose answers are the drafts instead of a "
                "model's: each folder's examples.jsonl, every question answered exactly once (a study's SFT folds' "
                "out-of-fold answers). No model is loaded."})


@dataclass
class AnnotateArgs:
    predictions: str = field(metadata={"help": "JSONL written by `predict`; with --drafts synthetic also SQuAD data "
                                               "(a file or dataset id; no prediction needed)."})
    out: str = field(metadata={"help": "Output JSONL."})
    articles: str | None = field(default=None, metadata={"help": "With SQuAD data: a split name or titles."})
    limit: int | None = field(default=None, metadata={
        "help": "With SQuAD data: a random sample of N questions, drawn with --seed (as every command's --limit)."})
    annotator: Literal["reference", "llm"] = field(default="reference", metadata={
        "help": "AI annotator: deterministic reference, or an LLM (--base) whose feedback is checked."})
    on_fail: Literal["replace", "flag"] = field(default="replace", metadata={
        "help": "LLM feedback that fails the check: replaced by the reference feedback, or kept and flagged."})
    human: str | None = field(default=None, metadata={
        "help": "Human feedback: CSV/JSONL (qid or question, prediction, feedback, annotator) or the app's "
                "feedback .sqlite."})
    human_fraction: float = field(default=0.0, metadata={"help": "Share of examples with human feedback."})
    feedback_rows: str | None = field(default=None, metadata={
        "help": "The app's feedback store or its JSONL export: every row a training row, mixed in at "
                "--human-fraction (1: the feedback alone)."})
    drafts: Literal["own", "own+synthetic", "synthetic", "own+balanced"] = field(default="own", metadata={
        "help": "Feedback on the model's own answers only, also on synthetic drafts (gold, near-miss, other span, "
                "'no answer', plausible answer) so every verdict is learned, on synthetic drafts only, or on the own "
                "answers plus synthetic drafts of the scarcer verdict until Correct and Incorrect are level."})
    synthetic_per_question: int = field(default=1, metadata={"help": "Synthetic drafts per question."})
    seed: int = field(default=0, metadata={"help": "Seed for drafts and phrasing (and --limit's sample)."})
    json: bool = field(default=False, metadata={"help": "Print the report on stdout."})

    def __post_init__(self):
        check_at_least_one(synthetic_per_question=self.synthetic_per_question, limit=self.limit)
        from laffi.feedback.annotation import check_human_fraction

        check_human_fraction(self.human_fraction)
        if self.human_fraction and not (self.human or self.feedback_rows):
            raise LaffiError("--human-fraction needs --human FILE (CSV, JSONL or the app's feedback .sqlite) or "
                             "--feedback-rows.")


@dataclass
class TrainDataArgs:
    data: str = field(metadata={"help": "JSONL written by `annotate` (or `predict`); the app's feedback store "
                                        "(data/feedback.sqlite) or its JSONL export (every feedback row a training "
                                        "row); or for SFT a SQuAD file / dataset id."})
    articles: str | None = field(default=None, metadata={"help": "With SQuAD --data: a split name or titles."})
    limit: int | None = field(default=None, metadata={"help": "With SQuAD --data: a seeded sample of N questions."})
    data_seed: int = field(default=0, metadata={"help": "With SQuAD --data: the sampling seed."})
    no_resume: bool = field(default=False, metadata={"help": "Start over even if checkpoints exist."})
    run_key: str | None = field(default=None, metadata={
        "help": "Written into the adapter's training_config.json; `pipeline` and the app set it to recognise the "
                "adapter they asked for (leave it unset)."})

    def __post_init__(self):
        check_at_least_one(limit=self.limit)


def annotate_records(records: list[dict], args: AnnotateArgs, lm=None, on_event=None,
                     log=print) -> tuple[list[dict], dict]:
    """Stage 2, written once (the pipeline, `laffi annotate` and the app's jobs): drafts to judge
    (laffi.feedback.drafts), AI feedback mixed with human feedback that matches a question, then the app's
    collected feedback rows at the human fraction (laffi.feedback.annotation.mix_with_feedback). `args` says how
    (its predictions/out paths are the caller's business). on_event: the LLM annotator's GenerationEvents
    (laffi.inference.events). Returns (records, report)."""
    from laffi.feedback.annotation import annotate_with_human, mix_with_feedback
    from laffi.feedback.drafts import add_drafts

    records, mix = add_drafts(records, args.drafts, seed=args.seed, k=args.synthetic_per_question)
    if records:
        log(f"annotate: {args.annotator} annotator on {len(records)} drafts ({args.drafts}: {mix})"
            + (f", human fraction {args.human_fraction}" if args.human else ""))
    annotated, report = annotate_with_human(records, args.annotator, seed=args.seed, lm=lm, on_fail=args.on_fail,
                                            human=args.human, human_fraction=args.human_fraction,
                                            on_event=on_event)
    report["drafts"] = {"mix": args.drafts, "per_kind": mix}
    for p in report.get("human_problems", [])[:10]:
        log(f"warning: human feedback {p}")
    if args.feedback_rows:
        annotated = mix_with_feedback(args.feedback_rows, annotated, args.human_fraction, args.seed, log)
    return annotated, report


def records_for_training(data: TrainDataArgs, log=print) -> list[dict]:
    """What `train --data` reads: the app's feedback store or its export (every feedback row a training row),
    records written by `predict`/`annotate` (JSONL with a prediction per row), or SQuAD questions (a file or
    dataset id, narrowed by articles/limit) for SFT, which needs no prediction."""
    from laffi.feedback.annotation import mix_with_feedback
    from laffi.feedback.store import is_feedback_file
    from laffi.squad.data import select_data

    if is_feedback_file(data.data):  # the collected feedback alone
        return mix_with_feedback(data.data, [], 1.0, data.data_seed, log)
    if str(data.data).endswith(".jsonl") and Path(data.data).is_file():
        rows = read_jsonl(data.data)
        if rows and isinstance(rows[0], dict) and ("prediction" in rows[0] or "feedback" in rows[0]):
            return rows
    examples, problems = select_data(data.data, data.articles, data.limit, data.data_seed)
    for p in problems[:10]:
        log(f"warning: skipped {p}")
    return [e.to_dict() for e in examples]


def train_records(records, tcfg, data: TrainDataArgs, callbacks=(), log=print, extra_files: dict | None = None,
                  settings=None):
    """Stage 3, written once: one TrainConfig trained here (records() gives the records), or on several
    processes through `accelerate launch`, which runs `laffi train` with the flags of `data` and `tcfg` on every
    rank (laffi.commandline). settings: the entry point's (the model cache; world_size > 1 in a launch's rank).
    Settings the model can't use are refused first (laffi.training.preflight.preflight). Returns the TrainResult."""
    from laffi.training.distributed import needs_launch, run_training
    from laffi.training.preflight import preflight
    from laffi.training.trainer import train_adapter

    preflight(tcfg, settings)
    if needs_launch(tcfg, settings.world_size if settings else 1):  # Stop reaches every rank
        return run_training(tcfg, flags(data), data.run_key, log)
    return train_adapter(records(), tcfg, resume=not data.no_resume, extra_callbacks=callbacks, run_key=data.run_key,
                         extra_files=extra_files, settings=settings)

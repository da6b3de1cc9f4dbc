"""The options of each command that are not already a config dataclass (ModelConfig, GenerationConfig,
TrainConfig, BenchConfig): one small dataclass per command, whose fields become its flags and `--config` keys.

Usage:  parser = TrlParser([ModelConfig, GenerationConfig, DataArgs, EvalArgs])   # see laffi.cli
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from laffi.errors import LaffiError


def _positive(**values) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise LaffiError(f"--{name.replace('_', '-')} must be at least 1, not {value}.")


@dataclass
class AskArgs:
    context: str = field(metadata={"help": "The passage."})
    question: str = field(metadata={"help": "A question about the passage."})
    variants: str | None = field(default=None, metadata={"help": "Comma-separated variants (default: all, e.g. "
                                                                 "base,sft,laffi)."})
    max_context_tokens: int = field(default=2048, metadata={
        "help": "Longer passages are cut to the sentences around the best match for the question."})
    feedback: bool = field(default=False, metadata={
        "help": "Every variant also predicts feedback on its draft and names a revised answer (variants whose answer "
                "path is 'via feedback' always do)."})
    stream: bool = field(default=False, metadata={"help": "Print every variant's answer as it is generated."})
    json: bool = field(default=False, metadata={"help": 'Print {"answers": {variant: {"answer": ...}}}.'})

    def __post_init__(self):
        _positive(max_context_tokens=self.max_context_tokens)


@dataclass
class DataArgs:
    """Which questions: what laffi.squad.data.select_data takes."""

    data: str = field(metadata={"help": "SQuAD JSON/JSONL file, or a HF dataset id (needs the hub)."})
    split: str = field(default="validation", metadata={"help": "Split of a HF dataset id."})
    articles: str | None = field(default=None, metadata={"help": "A split name (train, validation, eval) or "
                                                                 "comma-separated titles."})
    limit: int | None = field(default=None, metadata={"help": "A seeded random sample of N questions."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})

    def __post_init__(self):
        _positive(limit=self.limit)


@dataclass
class EvalArgs:
    variants: str | None = field(default=None, metadata={"help": "Comma-separated variants (default: all)."})
    out: str | None = field(default=None, metadata={"help": "Write predictions, per-example scores and "
                                                            "metrics.json here."})
    feedback: bool = field(default=False, metadata={
        "help": "Every variant also predicts feedback on its draft: F1 via feedback, verdict agreement and balanced "
                "verdict accuracy (variants whose answer path is 'via feedback' always do)."})
    compare: str | None = field(default=None, metadata={
        "help": "Paired differences on the same questions, with 95 %% intervals: comma-separated pairs a:b (e.g. "
                "'laffi:sft'); every variant is also compared with the always-'no answer' policy."})
    json: bool = field(default=False, metadata={"help": "Print the metrics as JSON."})


@dataclass
class CalibrateArgs:
    variants: str | None = field(default=None, metadata={"help": "Comma-separated variants (default: all)."})
    out: str | None = field(default=None, metadata={"help": "Also write the evaluation files (na_probs.json, ...) "
                                                            "here."})
    dry_run: bool = field(default=False, metadata={"help": "Print the thresholds without writing them."})
    json: bool = field(default=False, metadata={"help": "Print the calibrations as JSON."})


@dataclass
class PredictArgs:
    out: str = field(metadata={"help": "Output JSONL (a dataset loadable with `datasets`)."})
    variant: str = field(default="base", metadata={"help": "Which variant answers."})


@dataclass
class AnnotateArgs:
    predictions: str = field(metadata={"help": "JSONL written by `predict`; with --drafts synthetic also SQuAD data "
                                               "(a file or dataset id; no prediction needed)."})
    out: str = field(metadata={"help": "Output JSONL."})
    articles: str | None = field(default=None, metadata={"help": "With SQuAD data: a split name or titles."})
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
    drafts: Literal["own", "own+synthetic", "synthetic"] = field(default="own", metadata={
        "help": "Feedback on the model's own answers only, also on synthetic drafts (gold, near-miss, other span, "
                "'no answer', plausible answer) so every verdict is learned, or on synthetic drafts only."})
    synthetic_per_question: int = field(default=1, metadata={"help": "Synthetic drafts per question."})
    seed: int = field(default=0, metadata={"help": "Seed for drafts and phrasing."})
    json: bool = field(default=False, metadata={"help": "Print the report on stdout."})

    def __post_init__(self):
        _positive(synthetic_per_question=self.synthetic_per_question)
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
        _positive(limit=self.limit)


@dataclass
class PipelineArgs:
    config: str = field(metadata={"help": "YAML file of PipelineConfig keys (e.g. configs/laffi.yaml)."})
    force: bool = field(default=False, metadata={"help": "Redo every stage even if its output exists."})
    overwrite: bool = field(default=False, metadata={"help": "Replace adapters of the same names trained with other "
                                                             "settings (otherwise refused)."})
    json: bool = field(default=False, metadata={"help": "Print results as JSON instead of Markdown tables."})
    num_processes: int | None = field(default=None, metadata={
        "help": "Training processes, one per GPU (default: the config's train.num_processes, else every visible "
                "GPU, 1 on a CPU); more than 1 trains through `accelerate launch`."})

    def __post_init__(self):
        _positive(num_processes=self.num_processes)


@dataclass
class StudyArgs:
    config: str = field(metadata={"help": "YAML with 'base' (pipeline settings) and 'trials' (configs/study.yaml)."})
    only: str | None = field(default=None, metadata={"help": "Comma-separated trial names to run (default: all)."})
    json: bool = field(default=False, metadata={"help": "Print the summary rows as JSON."})


@dataclass
class BenchArgs:
    quick: bool = field(default=False, metadata={"help": "One repeat, few questions: a smoke run, not for the "
                                                         "README."})
    out: str | None = field(default=None, metadata={"help": "Also write the JSON report to this file."})

"""The options of each command that are not already a config dataclass of the library (ModelConfig,
GenerationConfig, TrainConfig, BenchConfig, DataArgs in laffi.squad.data, the stage inputs in laffi.pipeline.steps):
one small dataclass per command, whose fields become its flags and `--config` keys.

Usage:  parser = TrlParser([ModelConfig, GenerationConfig, DataArgs, EvalArgs])   # see laffi.cli
"""

from __future__ import annotations

from dataclasses import dataclass, field

from laffi.errors import check_at_least_one


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
        check_at_least_one(max_context_tokens=self.max_context_tokens)


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
        check_at_least_one(num_processes=self.num_processes)


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

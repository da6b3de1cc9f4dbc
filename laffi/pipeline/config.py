"""One pipeline run's specification (PipelineConfig): data, base model, which runs to train and how, where the
outputs go; read from YAML (a study's trials are this base plus the keys they change).

Usage:
    cfg = PipelineConfig.from_yaml("configs/laffi.yaml", out_dir="runs/x")   # keys as in the dataclass below
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from laffi.errors import LaffiError
from laffi.settings import DEFAULT_SQUAD

METHOD_KEYS = ("sft", "laffi")  # the two runs a pipeline trains: plain SFT and LaFFi


@dataclass
class PipelineConfig:
    """Everything one reproducible run depends on (a YAML file's keys; CLI flags of `pipeline` override them)."""

    data: str = field(default=str(DEFAULT_SQUAD), metadata={"help": "SQuAD data: a JSON/JSONL file or dataset id."})
    base: str = field(default="embedded", metadata={"help": "Base model (as --base)."})
    train_articles: str = field(default="train", metadata={"help": "Split name or titles for training."})
    eval_articles: str = field(default="eval", metadata={"help": "Split name or titles for evaluation ('validation' "
                                                                  "while choosing settings)."})
    train_limit: int | None = field(default=None, metadata={"help": "Training questions (seeded sample; none: all)."})
    eval_limit: int | None = field(default=None, metadata={"help": "Evaluation questions (seeded sample; none: all)."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling and annotation phrasing."})
    annotator: str = field(default="reference", metadata={"help": "AI annotator: 'reference' or 'llm'."})
    human_feedback: str | None = field(default=None, metadata={"help": "CSV/JSONL/SQLite of human feedback."})
    human_fraction: float = field(default=0.0, metadata={"help": "Share of examples with human feedback (hybrid)."})
    feedback_rows: str | None = field(default=None, metadata={
        "help": "The app's feedback store (or its JSONL export): every row is a training row whatever its passage "
                "(laffi.feedback.store.feedback_examples). With human_fraction 1 they are all the data; below 1 "
                "they are mixed with AI feedback on SQuAD training questions so that they make up that share."})
    drafts: str = field(default="own", metadata={"help": "Drafts LaFFi learns feedback on: 'own' (the base model's "
                                                         "answers, or draft_predictions'), 'own+synthetic', "
                                                         "'synthetic' or 'own+balanced' (laffi.feedback.drafts)."})
    synthetic_per_question: int = field(default=1, metadata={"help": "Synthetic drafts per question."})
    draft_predictions: list | None = field(default=None, metadata={
        "help": "Evaluation folders (globs allowed) whose answers are the own drafts instead of the base model's, "
                "e.g. the SFT folds' held-out articles (laffi.feedback.drafts.predicted_drafts)."})
    methods: list = field(default_factory=lambda: list(METHOD_KEYS), metadata={
        "help": "Which runs to train: sft, laffi or both."})
    sft_name: str = field(default="sft", metadata={"help": "Adapter name of the SFT run."})
    laffi_name: str = field(default="laffi", metadata={"help": "Adapter name of the LaFFi run."})
    train: dict = field(default_factory=dict, metadata={"help": "TrainConfig settings shared by both runs."})
    sft: dict = field(default_factory=dict, metadata={"help": "TrainConfig settings for the SFT run only."})
    laffi: dict = field(default_factory=dict, metadata={"help": "TrainConfig settings for the LaFFi run only "
                                                                "(method: laffi or laffi+sft)."})
    laffi_answer_path: dict | None = field(default=None, metadata={
        "help": "How the LaFFi adapter answers (laffi.inference.selffeedback.AnswerPath): {kind: direct|feedback, draft_by: "
                "self|base}; written next to it as answer_path.json."})
    seeds: list = field(default_factory=lambda: [0], metadata={
        "help": "Training seeds; the first seed's adapters go to adapters_dir, the others to out_dir/seeds/."})
    out_dir: str = field(default="runs/pipeline", metadata={"help": "Where stage outputs and results go."})
    run_name: str = field(default="results", metadata={"help": "Sub-folder of out_dir for this run's evaluation."})
    adapters_dir: str = field(default="adapters", metadata={"help": "Where the first seed's adapters are written."})
    overwrite: bool = field(default=False, metadata={"help": "Replace adapters of the same names that were "
                                                             "trained with other settings."})
    eval_batch_size: int | None = field(default=None, metadata={
        "help": "Rows per generation batch (default: 16 on a GPU, 8 on a CPU)."})
    eval_feedback: bool = field(default=True, metadata={"help": "Evaluate every variant's feedback too."})
    extra_data: str | None = field(default=None, metadata={
        "help": "Another SQuAD 2.0 file whose articles join the training articles, balanced to their share of "
                "unanswerable questions (laffi.squad.combine; e.g. the official training set's articles)."})
    extra_balance: str = field(default="match", metadata={
        "help": "'match': extra_data's answerable questions are subsampled to the training articles' share of "
                "unanswerable ones; 'all': every question of it is kept."})
    calibrate_articles: str | None = field(default=None, metadata={
        "help": "Split or titles on which every trained adapter's no-answer threshold is chosen before evaluation "
                "(laffi.pipeline.calibration; e.g. 'validation'); none: the adapters keep what they have."})
    calibrate_limit: int | None = field(default=None, metadata={
        "help": "Calibration questions (seeded sample; none: all)."})

    def __post_init__(self):
        from laffi.feedback.drafts import DRAFT_MIXES
        from laffi.training.trainer import TrainConfig

        if self.annotator not in ("reference", "llm"):
            raise LaffiError(f"PipelineConfig.annotator must be 'reference' or 'llm', not {self.annotator!r}.")
        from laffi.feedback.annotation import check_human_fraction

        check_human_fraction(self.human_fraction, "PipelineConfig.human_fraction")
        if self.drafts not in DRAFT_MIXES:
            raise LaffiError(f"PipelineConfig.drafts must be one of {', '.join(DRAFT_MIXES)}, not {self.drafts!r}.")
        if self.draft_predictions is not None and (self.drafts == "synthetic" or not isinstance(
                self.draft_predictions, list) or not self.draft_predictions):
            raise LaffiError("PipelineConfig.draft_predictions is a list of evaluation folders whose answers are the "
                             "own drafts: it needs drafts 'own', 'own+synthetic' or 'own+balanced'.")
        if not set(self.methods) <= set(METHOD_KEYS) or not self.methods:
            raise LaffiError(f"PipelineConfig.methods must list sft and/or laffi, not {self.methods!r}.")
        if not self.seeds or not all(isinstance(s, int) for s in self.seeds):
            raise LaffiError(f"PipelineConfig.seeds must be a list of integers, not {self.seeds!r}.")
        known = set(TrainConfig.__dataclass_fields__) - {"name", "base", "adapters_dir", "work_dir", "seed"}
        for where in ("train", "sft", "laffi"):
            bad = set(getattr(self, where) or {}) - known
            if bad:
                raise LaffiError(f"PipelineConfig.{where} has unknown setting(s): {', '.join(sorted(bad))}.")
        if self.extra_balance not in ("match", "all"):
            raise LaffiError(f"PipelineConfig.extra_balance must be 'match' or 'all', not {self.extra_balance!r}.")
        if self.laffi_answer_path is not None:
            from laffi.inference.selffeedback import AnswerPath

            AnswerPath(**self.laffi_answer_path)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "PipelineConfig":
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError as e:
            raise LaffiError(f"The pipeline config {str(path)!r} does not exist.") from e
        except yaml.YAMLError as e:
            raise LaffiError(f"The pipeline config {path} is not valid YAML ({e}).") from e
        if not isinstance(raw, dict):
            raise LaffiError(f"The pipeline config {path} must be a mapping of PipelineConfig keys.")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise LaffiError(f"The pipeline config {path} has unknown key(s): {', '.join(sorted(unknown))}.")
        return cls(**{**raw, **overrides})

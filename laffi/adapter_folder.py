"""An adapter folder and every file in it, owned in one place: what each file is called, how it is read and
written, and how a finished folder is published (everything written first, then one rename).

Usage:
    folder = AdapterFolder("adapters/sft")
    folder.config()["train"]["method"]; folder.run_key(); folder.manifest(); folder.metrics()
    folder.write(ANSWER_PATH, {"kind": "verify", "draft_by": "base"})     # atomic, JSON
    publish(staging_dir, final_dir, overwrite=False)                      # the folder appears whole, or not at all
    result = train_adapter(...); result.status, result.path               # TrainResult: "finished" or "stopped"

A folder holds PEFT's adapter_config.json and adapter_model.safetensors, and laffi's own files:
    training_config.json   every setting, run statistics, library versions, the run key (laffi.training.trainer)
    data_manifest.json     which articles, questions and feedback rows it learned from
    loss_log.jsonl         training and held-out loss per step (laffi.training.logs)
    metrics.json           its evaluation, with intervals (laffi.training.logs.write_evaluation)
    answer_path.json       how it answers (laffi.inference.selffeedback.AnswerPath)
    calibration.json       its no-answer threshold, chosen on validation (laffi.inference.answerability)
    precision_guard.json   its answers in bfloat16 against float32 (laffi.bench.work.quality_guard)
    self_feedback.json     how often its feedback's verdict on its own answers is right, on the most questions
                           measured (laffi.evaluation.pooled.self_feedback_record; the Ask tab's caveat)
    README.md              the model card
and beside the folders, base-calibration.json and base-precision_guard.json: the base model's own.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

PEFT_CONFIG = "adapter_config.json"
CONFIG = "training_config.json"
MANIFEST = "data_manifest.json"
LOSS_LOG = "loss_log.jsonl"
METRICS = "metrics.json"
ANSWER_PATH = "answer_path.json"
CALIBRATION = "calibration.json"
CARD = "README.md"
BASE_CALIBRATION = "base-calibration.json"  # in an adapters folder, beside the adapter folders
PRECISION_GUARD = "precision_guard.json"
SELF_FEEDBACK = "self_feedback.json"
BASE_PRECISION_GUARD = "base-precision_guard.json"  # beside the adapter folders, like BASE_CALIBRATION


class AdapterFolder:
    """Read and write the laffi files of one adapter folder (missing or unreadable files read as None)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def read(self, name: str) -> dict | None:
        try:
            value = json.loads((self.path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def write(self, name: str, value: dict) -> Path:
        from laffi.io import write_json_atomic

        write_json_atomic(self.path / name, value)
        return self.path / name

    def config(self) -> dict | None:
        return self.read(CONFIG)

    def manifest(self) -> dict | None:
        return self.read(MANIFEST)

    def metrics(self) -> dict | None:
        return self.read(METRICS)

    def self_feedback(self) -> dict | None:
        return self.read(SELF_FEEDBACK)

    def run_key(self) -> str | None:
        return (self.config() or {}).get("run_key")

    def method(self) -> str | None:
        train = (self.config() or {}).get("train")
        return train.get("method") if isinstance(train, dict) else None

    def is_adapter(self) -> bool:
        return (self.path / PEFT_CONFIG).is_file()


@dataclass(frozen=True)
class TrainResult:
    """What a training run ended as: "finished" (path: the published adapter folder) or "stopped" on request
    (path: the work folder whose checkpoint Resume continues from)."""

    status: str
    path: Path

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def publish(staging: Path, final: Path, overwrite: bool) -> None:
    """Move a complete staging folder to `final` in one rename; an existing `final` is replaced only with
    overwrite (it stays in place until the new one is there). Raises FileExistsError otherwise."""
    if final.exists() and not overwrite:
        raise FileExistsError(final)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(final)

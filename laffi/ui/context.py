"""What every tab shares: the loaded model, the feedback store and the app's settings (from the environment).

Usage:
    ctx = AppContext.create(lm)          # settings from LAFFI_* environment variables
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from laffi.feedback_store import FeedbackStore

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SQUAD = REPO.parent / "shared" / "data" / "squad_v2" / "dev-12-articles.json"


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class AppSettings:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("LAFFI_DATA_DIR") or REPO / "data"))
    max_context_chars: int = field(default_factory=lambda: _env_int("LAFFI_MAX_CONTEXT_CHARS", 8000))
    max_eval_questions: int = field(default_factory=lambda: _env_int("LAFFI_MAX_EVAL_QUESTIONS", 500))
    squad_path: Path = field(default_factory=lambda: Path(os.environ.get("LAFFI_SQUAD") or DEFAULT_SQUAD))
    runs_dir: Path = field(default_factory=lambda: Path(os.environ.get("LAFFI_RUNS_DIR") or REPO / "runs" / "app"))
    max_slots: int = 6  # variants shown side by side
    # Training runs arbitrary-length jobs: on by default on a laptop, off on a public Space unless turned on.
    enable_training: bool = field(default_factory=lambda: os.environ.get(
        "LAFFI_ENABLE_TRAINING", "0" if os.environ.get("SPACE_ID") else "1").lower() in ("1", "true", "yes"))


@dataclass
class AppContext:
    lm: object
    store: FeedbackStore
    settings: AppSettings

    @classmethod
    def create(cls, lm, settings: AppSettings | None = None) -> "AppContext":
        settings = settings or AppSettings()
        return cls(lm=lm, store=FeedbackStore(settings.data_dir / "feedback.sqlite"), settings=settings)


def data_path(settings: AppSettings, source: str, upload) -> str:
    """The SQuAD file a Train or Evaluate run reads: the shared file, or the user's upload (a gr.Error if none)."""
    if source != "upload":
        return str(settings.squad_path)
    path = getattr(upload, "name", upload)
    if not path:
        import gradio as gr

        raise gr.Error("Upload a SQuAD JSON file first, or choose the shared file.")
    return path

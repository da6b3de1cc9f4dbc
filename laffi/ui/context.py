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


def _env_flag(name: str) -> bool:
    default = "0" if os.environ.get("SPACE_ID") else "1"
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


@dataclass
class AppSettings:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("LAFFI_DATA_DIR") or REPO / "data"))
    # Request-size limits that keep a 2-core Space responsive (each configurable; README, "Deploying").
    max_context_chars: int = field(default_factory=lambda: _env_int("LAFFI_MAX_CONTEXT_CHARS", 200_000))
    max_context_tokens: int = field(default_factory=lambda: _env_int("LAFFI_MAX_CONTEXT_TOKENS", 1024))
    max_new_tokens: int = field(default_factory=lambda: _env_int("LAFFI_MAX_NEW_TOKENS", 32))
    max_eval_questions: int = field(default_factory=lambda: _env_int("LAFFI_MAX_EVAL_QUESTIONS", 500))
    squad_path: Path = field(default_factory=lambda: Path(os.environ.get("LAFFI_SQUAD") or DEFAULT_SQUAD))
    runs_dir: Path = field(default_factory=lambda: Path(os.environ.get("LAFFI_RUNS_DIR") or REPO / "runs" / "app"))
    max_slots: int = 6  # variants shown side by side
    # Training (long jobs), data upload and feedback export: on by default on a laptop, off on a public Space
    # (SPACE_ID is set there) unless turned on; with LAFFI_ADMIN_PASSWORD set they also need the password.
    # Asking questions and giving feedback are always open.
    enable_training: bool = field(default_factory=lambda: _env_flag("LAFFI_ENABLE_TRAINING"))
    enable_upload: bool = field(default_factory=lambda: _env_flag("LAFFI_ENABLE_UPLOAD"))
    enable_export: bool = field(default_factory=lambda: _env_flag("LAFFI_ENABLE_EXPORT"))
    admin_password: str | None = field(default_factory=lambda: os.environ.get("LAFFI_ADMIN_PASSWORD") or None,
                                       repr=False)


@dataclass
class AppContext:
    lm: object
    store: FeedbackStore
    settings: AppSettings

    @classmethod
    def create(cls, lm, settings: AppSettings | None = None) -> "AppContext":
        settings = settings or AppSettings()
        return cls(lm=lm, store=FeedbackStore(settings.data_dir / "feedback.sqlite"), settings=settings)


def require(settings: AppSettings, unlocked: bool, what: str, enabled: bool = True, flag: str = "") -> None:
    """A gr.Error unless `what` is turned on for this deployment and, with an admin password set, unlocked."""
    import gradio as gr

    if not enabled:
        raise gr.Error(f"{what} is turned off on this deployment; its operator can set {flag}=1 (see the README, "
                       "'Deploying').")
    if settings.admin_password and not unlocked:
        raise gr.Error(f"{what} needs the admin password: enter it under 'Admin' at the top of the page.")


def data_path(settings: AppSettings, source: str, upload, unlocked: bool = False) -> str:
    """The SQuAD file a Train or Evaluate run reads: the shared file, or the user's upload (a gr.Error if none)."""
    if source != "upload":
        return str(settings.squad_path)
    require(settings, unlocked, "Uploading data", settings.enable_upload, "LAFFI_ENABLE_UPLOAD")
    path = getattr(upload, "name", upload)
    if not path:
        import gradio as gr

        raise gr.Error("Upload a SQuAD JSON file first, or choose the shared file.")
    return path


def build_admin(settings: AppSettings):
    """The 'Admin' unlock (only when LAFFI_ADMIN_PASSWORD is set); returns the per-session unlocked gr.State."""
    import hmac
    import time

    import gradio as gr

    unlocked = gr.State(False)
    if not settings.admin_password:
        return unlocked
    with gr.Accordion("Admin", open=False):
        password = gr.Textbox(label="Admin password (training, data upload, feedback export)", type="password",
                              elem_id="admin-password")
        unlock = gr.Button("Unlock", elem_id="admin-unlock")
        status = gr.Markdown()

    def check(text):
        if hmac.compare_digest((text or "").encode(), settings.admin_password.encode()):
            return True, "Unlocked for this browser session.", ""
        time.sleep(1.0)  # slows guessing down
        raise gr.Error("Wrong admin password.")

    unlock.click(check, password, [unlocked, status, password], api_name="admin_unlock", concurrency_id="admin",
                 concurrency_limit=1)
    return unlocked

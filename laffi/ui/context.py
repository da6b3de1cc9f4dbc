"""What every tab shares: the loaded model, the feedback store and the app's settings (laffi.settings).

Usage:
    ctx = AppContext.create(lm)          # settings from LAFFI_* environment variables
"""

from __future__ import annotations

from dataclasses import dataclass

from laffi.feedback_store import FeedbackStore
from laffi.settings import Settings


@dataclass
class AppContext:
    lm: object
    store: FeedbackStore
    settings: Settings

    @classmethod
    def create(cls, lm, settings: Settings | None = None) -> "AppContext":
        settings = settings or Settings.from_env()
        return cls(lm=lm, store=FeedbackStore(settings.data_dir / "feedback.sqlite"), settings=settings)


def require(settings: Settings, unlocked: bool, what: str, enabled: bool = True, flag: str = "") -> None:
    """A gr.Error unless `what` is turned on for this deployment and, with an admin password set, unlocked."""
    import gradio as gr

    if not enabled:
        raise gr.Error(f"{what} is turned off on this deployment; its operator can set {flag}=1 (see the README, "
                       "'Deploying').")
    if settings.admin_password and not unlocked:
        raise gr.Error(f"{what} needs the admin password: enter it under 'Admin' at the top of the page.")


def data_path(settings: Settings, source: str, upload, unlocked: bool = False) -> str:
    """The SQuAD file a Train or Evaluate run reads: the shared file, or the user's upload (a gr.Error if none)."""
    if source != "upload":
        return str(settings.squad)
    require(settings, unlocked, "Uploading data", settings.enable_upload, "LAFFI_ENABLE_UPLOAD")
    path = getattr(upload, "name", upload)
    if not path:
        import gradio as gr

        raise gr.Error("Upload a SQuAD JSON file first, or choose the shared file.")
    return path


def build_admin(settings: Settings):
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

"""What every tab shares: the loaded model, the feedback store and the app's settings (laffi.settings), the order
variants are shown in, and keeping the adapter lists current while adapters are trained.

Usage:
    ctx = AppContext.create(lm, settings)   # a loaded model; the entry point's settings (laffi.settings)
    ctx = AppContext.create(LazyModel(settings), settings); ctx.lm.on_ready = ctx.model_loaded; ctx.lm.start()
                                         # the app: the model loads in the background (laffi.ui.loading); ctx.lm
                                         # waits for it
    ctx.variant_names()                  # base, sft, laffi, then the rest A-Z: loaded ones and new ones on disk
    ctx.scheduler.run_exclusive(ctx.sync_adapters)   # the model alone, on its thread (laffi.serving.scheduler):
                                         # adapters attached (new) or re-attached (replaced)
    ctx.adapters_changed()               # whether sync_adapters has anything to do (reads the disk only)
    btn.click(save, ..., **STORE_ONLY)   # an event that only touches the feedback store: never waits for the model
    ctx.calls.answer(pairs, variants, cfg)   # model calls (GPU tasks on ZeroGPU); ctx.sync: the Hub feedback push
    yield from ctx.scheduler.stream("answer", (pairs, variants, cfg), ...)   # Ask: batched with everyone's
    ordered(["laffi", "zeta", "base", "sft", "alpha"])   # -> ["base", "sft", "laffi", "alpha", "zeta"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from laffi.feedback.store import FeedbackStore
from laffi.inference.models import BASE_VARIANT, discover_adapters
from laffi.settings import Settings
from laffi.ui.text import error

FIRST = (BASE_VARIANT, "sft", "laffi")  # the paper's comparison first, then whatever else was trained
# Events that only read or write the feedback store (SQLite in WAL mode: one transaction per add, safe from many
# threads): their own concurrency group without a limit, so a rating is stored at once, never queued behind the
# answers (the scheduler's) nor behind other participants' saves.
STORE_ONLY = {"concurrency_id": "feedback-store", "concurrency_limit": None}
# Ask: every request goes straight to the scheduler (laffi.serving.scheduler), which batches them and refuses, with
# a sentence, those past LAFFI_QUEUE_SIZE; Gradio's own queue would serve them one at a time.
ASK_GROUP = {"concurrency_id": "ask", "concurrency_limit": None}


def ordered(names) -> list[str]:
    """Variant names in display order: base, sft, laffi, then the rest alphabetically."""
    names = list(dict.fromkeys(names))
    return [n for n in FIRST if n in names] + sorted((n for n in names if n not in FIRST), key=str.lower)


def _stamp(folder: Path):
    """What changes when an adapter folder is replaced (a new file under the same name): inode and mtime."""
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        try:
            st = (Path(folder) / name).stat()
        except OSError:
            continue
        return st.st_ino, st.st_mtime_ns
    return None


@dataclass
class AppContext:
    lm: object  # laffi.ui.loading.LazyModel: the LoadedModel's attributes, waiting while it loads
    store: FeedbackStore
    settings: Settings
    stamps: dict = field(default_factory=dict)  # adapter folder name -> _stamp when last synced (loaded or not)
    calls: object = None  # laffi.serving.model_calls.ModelCalls: every model call, a GPU task on ZeroGPU
    scheduler: object = None  # laffi.serving.scheduler.Scheduler: owns the model; Ask batches, exclusive turns
    sync: object = None  # laffi.feedback.hub_sync.FeedbackSync while feedback is pushed to a Hub dataset, else None

    @classmethod
    def create(cls, lm, settings: Settings) -> "AppContext":
        from laffi.feedback.hub_sync import start_feedback_sync
        from laffi.serving.model_calls import ModelCalls
        from laffi.serving.scheduler import Scheduler
        from laffi.ui.loading import LazyModel

        lazy = lm if isinstance(lm, LazyModel) else LazyModel.of(lm, settings)
        store = FeedbackStore(settings.data_dir / "feedback.sqlite")
        calls = ModelCalls.wrap(lazy, zero_gpu=settings.zero_gpu)
        ctx = cls(lm=lazy, store=store, settings=settings, calls=calls,
                  scheduler=Scheduler(calls, lazy, max_waiting=settings.queue_size, max_rows=settings.batch_rows),
                  sync=start_feedback_sync(store, settings))
        if lazy.ready:
            ctx.model_loaded(lazy.wait())
        return ctx

    def model_loaded(self, lm) -> None:
        """Once the model is loaded (before any event uses it): adapters trained in the app join it, now and
        whenever a model call syncs them, and the attached adapters' weights are stamped."""
        lm.watch(self.settings.trained_dir)
        self.stamps = {name: _stamp(path) for name, path in lm.adapters.items()}
        from laffi.inference.backends import BackendConfig, use_backend

        use_backend(lm, BackendConfig.from_settings(self.settings), log=print)  # LAFFI_BACKEND=vllm: a server answers

    def variant_names(self) -> list[str]:
        """Every variant, in display order: those loaded plus adapter folders that appeared since (a training job
        finished); the latter are attached by the next model call (sync_adapters)."""
        found, _ = discover_adapters(self.lm.config.adapters_dir)
        return ordered([*self.lm.variants, *found])

    def adapters_changed(self) -> bool:
        """Whether an adapter folder appeared, or one was replaced, since sync_adapters last looked (its work);
        reads the disk only, so any request may ask without taking the model."""
        found, _ = discover_adapters(self.lm.config.adapters_dir)
        return any(self.stamps.get(name) != _stamp(path) for name, path in found.items())

    def sync_adapters(self) -> list[str]:
        """Attach adapter folders that appeared, and re-attach any replaced since it was attached (trained again
        with 'Replace'), so answers come from the weights on disk. Mutates the model: call it only through
        `ctx.scheduler.run_exclusive`, where no one else's rows run."""
        lm = self.lm.wait()  # the LoadedModel itself (the LazyModel answers some attributes from disk while loading)
        for name, path in list(lm.adapters.items()):
            now = _stamp(path)
            if now is not None and self.stamps.setdefault(name, now) != now:
                lm.model.delete_adapter(name)
                del lm.adapters[name]
                lm.attach(name, path)  # a folder that no longer loads is skipped with a warning, as at start-up
                self.stamps[name] = now
        added = lm.refresh_adapters()
        self.stamps.update({name: _stamp(lm.adapters[name]) for name in added})
        found, _ = discover_adapters(lm.config.adapters_dir)  # a folder that did not load: tried again once it changes
        self.stamps.update({name: _stamp(path) for name, path in found.items() if name not in lm.adapters})
        return added

    def shipped(self, name: str) -> bool:
        """Whether `name` is an adapter the app did not train (shipped, or from LAFFI_ADAPTERS_DIR): never replaced
        from the app."""
        return name in self.variant_names() and not (self.settings.trained_dir / name).is_dir()


def upload_message(e: Exception, path: str) -> str:
    """The error's sentence with the server's temporary path of an upload replaced by the file's own name."""
    name = Path(path).name
    return str(e).replace(repr(str(path)), repr(name)).replace(str(path), name)


def require(settings: Settings, unlocked: bool, what: str, enabled: bool = True, flag: str = "") -> None:
    """A gr.Error unless `what` is turned on for this deployment and, with an admin password set, unlocked."""
    if not enabled:
        raise error(f"{what} is turned off on this deployment; its operator can set {flag}=1 (see the README, "
                       "'Deploying').")
    if settings.admin_password and not unlocked:
        raise error(f"{what} needs the admin password: enter it under 'Admin' at the top of the page.")


def data_path(settings: Settings, source: str, upload, unlocked: bool = False) -> str:
    """The SQuAD file a Train or Evaluate run reads: the shared file, or the user's upload (a gr.Error if none)."""
    if source != "upload":
        return str(settings.squad)
    require(settings, unlocked, "Uploading data", settings.enable_upload, "LAFFI_ENABLE_UPLOAD")
    path = getattr(upload, "name", upload)
    if not path:
        raise error("Upload a SQuAD JSON file first, or choose the shared file.")
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

    def check(password):
        if hmac.compare_digest((password or "").encode(), settings.admin_password.encode()):
            return True, "Unlocked for this browser session.", ""
        time.sleep(1.0)  # slows guessing down
        raise error("Wrong admin password.")

    unlock.click(check, password, [unlocked, status, password], api_name="admin_unlock", concurrency_id="admin",
                 concurrency_limit=1)
    return unlocked

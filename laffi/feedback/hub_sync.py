"""Collected feedback that outlives a Space: every stored row also goes to a private Hub dataset.

Usage:
    sync = start_feedback_sync(store, settings)   # None unless LAFFI_FEEDBACK_REPO and HF_TOKEN are set
    sync_status(sync, settings)                   # one sentence for the Feedback tab: last push, or why not
    sync.close()                                  # final push (also done at exit and on SIGTERM)

A Space's disk is wiped at every restart or rebuild, so SQLite (laffi.feedback.store) stays the local store - a
row is committed there before the audience reads "saved" - and each committed row is also appended, under the
scheduler's lock, to this process's own UUID-named JSONL file. huggingface_hub's CommitScheduler commits that
folder to the dataset every LAFFI_FEEDBACK_PUSH_MINUTES in a background thread (append-only files: a push
uploads what was appended since the last one), retries a failed push at the next tick, and pushes a last time
at exit. At start-up the dataset's rows that the local store lacks are restored (all of them after a restart),
and local rows the dataset lacks are queued, so a restarted Space shows what it had and nothing is left behind.
The documented extension point is used as documented: FeedbackScheduler overrides push_to_hub.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

from huggingface_hub import CommitScheduler

from laffi.feedback.store import WITHDRAWN, FeedbackStore, as_record, row_key
from laffi.io import parse_jsonl

log = logging.getLogger(__name__)
PATH_IN_REPO = "feedback"  # the dataset's files: feedback/<process uuid>.jsonl
ROTATE_BYTES = 64 << 20  # past this a process starts a new file: each push re-sends a changed file whole
EXIT_PUSH_SECONDS = 20  # how long a SIGTERM waits for the final push before the process goes


def one_sentence(error: BaseException) -> str:
    """An exception as a short clause for a status line: its first line, or its type."""
    text = (str(error).strip().splitlines() or [""])[0].strip().rstrip(".")
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class FeedbackScheduler(CommitScheduler):
    """CommitScheduler for feedback: push_to_hub records each push's outcome (for the status line) around
    upload(), the stock append-only upload; download() fetches the dataset's feedback files for a restore."""

    def __init__(self, *, lock: threading.Lock | None = None, **kwargs):
        # Set before CommitScheduler.__init__, whose thread pushes at once.
        self.shared_lock = lock or threading.Lock()
        self.last_success: float | None = None
        self.last_failure: tuple[float, str] | None = None
        self.pushes = 0
        super().__init__(**kwargs)

    # CommitScheduler.__init__ assigns `self.lock = Lock()`. The writers' lock must be the one the folder scan
    # takes from the first (immediate) push on, so that assignment is ignored and the shared lock is used.
    lock = property(lambda self: self.shared_lock, lambda self, value: None)

    def push_to_hub(self):
        try:
            info = self.upload()
        except Exception as e:
            self.last_failure = (time.time(), one_sentence(e))
            raise  # CommitScheduler logs it; the next tick (or the final push) tries again
        if info is not None:
            self.last_success, self.last_failure = time.time(), None
            self.pushes += 1
        return info

    def upload(self):
        """Commit what changed in the folder since the last successful push (None when nothing did)."""
        return super().push_to_hub()

    def download(self, dest: Path) -> list[Path]:
        """The dataset's feedback files, copied under dest; [] when the dataset does not exist yet."""
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            folder = self.api.snapshot_download(repo_id=self.repo_id, repo_type=self.repo_type,
                                                revision=self.revision, local_dir=dest, token=self.token,
                                                allow_patterns=[f"{PATH_IN_REPO}/*.jsonl"])
        except RepositoryNotFoundError:
            return []
        return sorted(Path(folder).glob(f"{PATH_IN_REPO}/*.jsonl"))


def read_rows(paths: list[Path]) -> list[dict]:
    """Rows from JSONL files; a line cut short (a push taken mid-write elsewhere) is skipped, not fatal."""
    rows: list[dict] = []
    for path in paths:
        problems: list[str] = []
        rows += [r for r in parse_jsonl(path.read_text(encoding="utf-8"), path.name, lenient=True,
                                        problems=problems) if isinstance(r, dict)]
        for p in problems:
            log.warning("skipped while restoring feedback: %s", p)
    return rows


class FeedbackSync:
    """Appends every row `store` commits to this process's file in `folder`, which a FeedbackScheduler pushes to
    `repo_id`; start() restores and starts, and keeps retrying in the background if the Hub can't be reached."""

    def __init__(self, store: FeedbackStore, repo_id: str, token: str | None, folder: str | Path,
                 every: float = 5.0, scheduler_class: type[FeedbackScheduler] = FeedbackScheduler,
                 **scheduler_kwargs):
        self.store, self.repo_id, self.token, self.every = store, repo_id, token, every
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / f"{uuid.uuid4()}.jsonl"
        self.lock = threading.Lock()  # == scheduler.lock once the scheduler exists
        self.scheduler_class, self.scheduler_kwargs = scheduler_class, scheduler_kwargs
        self.scheduler: FeedbackScheduler | None = None
        self.restored: int | None = None  # rows restored from the dataset at start-up (None: not yet)
        self.queued = 0  # local rows the dataset lacked, queued at start-up
        self.problem: str | None = None  # why start-up has not finished (it is being retried)
        self.missed: list[dict] = []  # rows whose append failed; written with the next one
        self.append_problem: str | None = None
        self.closed = threading.Event()
        store.listeners.append(self.append)

    def append(self, record: dict) -> None:
        """Called by the store after each committed add(): one JSON line, written under the scheduler's lock. A
        withdrawal is written as its own line (so other processes and restarts honour it), and this process's
        files are rewritten without that session's rows (the next push replaces them on the Hub)."""
        with self.lock:
            if WITHDRAWN in record:
                self.drop_session(record[WITHDRAWN])
            pending, self.missed = [*self.missed, record], []
            try:
                self.write(pending)
            except OSError as e:
                self.missed = pending  # still in SQLite; retried with the next row
                self.append_problem = one_sentence(e)
                raise

    def drop_session(self, session_id: str) -> None:
        """Rewrite this process's files without the rows of one session (caller holds the lock)."""
        from laffi.io import write_text_atomic

        for path in sorted(self.folder.glob("*.jsonl")):
            rows = read_rows([path])
            kept = [r for r in rows if r.get("session_id") != session_id]
            if len(kept) != len(rows):
                write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))

    def write(self, records: list[dict]) -> None:
        """Append records as whole lines (caller holds the lock). A failed write is cut back to where it began:
        half a line would swallow the next one."""
        if self.file.exists() and self.file.stat().st_size > ROTATE_BYTES:
            self.file = self.folder / f"{uuid.uuid4()}.jsonl"
        with self.file.open("a", encoding="utf-8") as f:
            start = f.tell()
            try:
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
                f.flush()
            except OSError:
                f.truncate(start)
                raise

    def start(self) -> "FeedbackSync":
        """Start pushing, restore the dataset's rows this store lacks, queue the rows the dataset lacks. What
        fails (no network, a bad token) is said by status() and retried every `every` minutes."""
        if not self._try_start():
            threading.Thread(target=self._retry, daemon=True, name="laffi-feedback-sync").start()
        return self

    def _retry(self) -> None:
        while not self.closed.wait(self.every * 60):
            if self._try_start():
                return

    def _try_start(self) -> bool:
        try:
            if self.scheduler is None:
                self.scheduler = self.scheduler_class(
                    repo_id=self.repo_id, repo_type="dataset", folder_path=self.folder, path_in_repo=PATH_IN_REPO,
                    every=self.every, private=True, token=self.token, allow_patterns=["*.jsonl"], lock=self.lock,
                    **self.scheduler_kwargs)
            if self.restored is None:
                self.restored, self.queued = self.reconcile()
        except Exception as e:  # network, permissions, a token without write access: the operator's to fix
            self.problem = one_sentence(e)
            log.warning("feedback sync to %s not started yet: %s", self.repo_id, self.problem)
            return False
        self.problem = None
        return True

    def reconcile(self) -> tuple[int, int]:
        """(rows restored into the store, local rows queued for the dataset)."""
        with tempfile.TemporaryDirectory() as tmp:
            remote = read_rows(self.scheduler.download(Path(tmp)))
        withdrawn = {r[WITHDRAWN] for r in remote if WITHDRAWN in r} | self.store.withdrawn()
        self.store.apply_withdrawals(withdrawn)
        remote = [r for r in remote if WITHDRAWN not in r and r.get("session_id") not in withdrawn]
        restored = self.store.insert_rows(remote)
        with self.lock:
            known = {row_key(r) for r in remote} | {row_key(r) for r in read_rows(sorted(self.folder.glob("*.jsonl")))}
        missing = [as_record(r) for r in self.store.rows() if row_key(r) not in known]
        if missing:
            with self.lock:
                self.write(missing)
        return restored, len(missing)

    def push_now(self, timeout: float | None = None):
        """Push what is waiting now and wait for it (None if the scheduler never started)."""
        return self.scheduler.trigger().result(timeout) if self.scheduler else None

    def close(self, timeout: float | None = EXIT_PUSH_SECONDS) -> None:
        """Final push, then stop (the exit hook then has nothing left to do)."""
        self.closed.set()
        if self.scheduler is None:  # never reached the Hub: one last try, or these rows go with the machine
            self._try_start()
        if self.scheduler is not None:
            try:
                self.push_now(timeout)
            finally:
                self.scheduler.stop()

    def status(self) -> str:
        return sync_status(self)


def sync_status(sync: FeedbackSync | None, settings=None) -> str:
    """One sentence on where collected feedback is kept: the last push, or why there is none."""
    if sync is None:
        on_space = bool(getattr(settings, "on_space", False))
        return ("Feedback is kept only in this app's local SQLite store"
                + (", which a Space loses at every restart" if on_space else "")
                + "; set LAFFI_FEEDBACK_REPO and HF_TOKEN to also keep it in a private Hub dataset.")
    repo, every = f"`{sync.repo_id}`", f"{sync.every:g} minute{'s' if sync.every != 1 else ''}"
    s = sync.scheduler
    if s is None or sync.restored is None:
        return (f"Feedback is not reaching the dataset {repo} yet ({sync.problem or 'starting'}); this is retried "
                f"every {every}, and every row stays stored on this machine meanwhile.")
    restored = f" ({sync.restored} rows restored from it at start-up)" if sync.restored else ""
    if sync.missed:
        return (f"{len(sync.missed)} stored rows are not queued for the dataset {repo} yet ({sync.append_problem}); they "
                "are kept on this machine and queued again with the next row.")
    if s.last_failure and (not s.last_success or s.last_failure[0] > s.last_success):
        return (f"The last push to the private dataset {repo} failed at {when(s.last_failure[0])} "
                f"({s.last_failure[1]}); it is retried every {every}, and the rows stay on this machine meanwhile.")
    if s.last_success:
        return (f"Feedback was last pushed to the private dataset {repo} at {when(s.last_success)}; new rows "
                f"follow within {every}{restored}.")
    return f"Feedback is pushed to the private dataset {repo} every {every}; nothing new to push yet{restored}."


def push_on_sigterm(sync: FeedbackSync) -> bool:
    """A Space is stopped with SIGTERM, which ends Python without its exit hooks (the scheduler's final push
    among them): push first, then let the signal do what it did before. Main thread only; False elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        try:
            sync.close()
        except Exception as e:  # noqa: BLE001  (going down anyway: say what was not pushed)
            log.error("final feedback push failed: %s", one_sentence(e))
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)
    return True


def start_feedback_sync(store: FeedbackStore, settings) -> FeedbackSync | None:
    """The app's sync from its settings (None unless LAFFI_FEEDBACK_REPO and HF_TOKEN are both set)."""
    if not settings.feedback_sync:
        return None
    sync = FeedbackSync(store, settings.feedback_repo, settings.hf_token, settings.data_dir / "hub-sync",
                        every=settings.feedback_push_minutes).start()
    push_on_sigterm(sync)
    return sync

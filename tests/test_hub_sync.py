"""Feedback that outlives a Space (laffi.feedback.hub_sync): rows reach the "dataset" append-only, survive a restart (a new
store, a new process), and a failed push or start-up is retried - with a scheduler that uploads to a folder."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from laffi.errors import LaffiError
from laffi.feedback.hub_sync import FeedbackSync, push_on_sigterm, sync_status
from laffi.feedback.store import FeedbackStore, as_record
from laffi.settings import Settings

from .conftest import REPO
from .hub_fakes import FolderScheduler, OfflineApi


def row(n: int, **kw) -> dict:
    return dict(session_id=f"s{n}", variant="sft", question=f"Question {n}?", context="A passage.",
                answer=f"answer {n}", thumbs=1 if n % 2 else -1, critique=f"Critique {n}, ünïcode ✓", **kw)


def make_sync(store, tmp_path, every=60.0, name="queue", **kw):
    return FeedbackSync(store, "me/laffi-feedback", None, tmp_path / name, every=every,
                        scheduler_class=FolderScheduler, remote=tmp_path / "hub", hf_api=kw.pop("api", OfflineApi()),
                        **kw)


def remote_rows(tmp_path) -> list[dict]:
    return [json.loads(line) for p in sorted((tmp_path / "hub" / "feedback").glob("*.jsonl"))
            for line in p.read_text(encoding="utf-8").splitlines()]


def wait_for(check, seconds=15.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_rows_reach_the_dataset_append_only(tmp_path):
    store = FeedbackStore(tmp_path / "a" / "feedback.sqlite")
    sync = make_sync(store, tmp_path).start()
    try:
        ids = [store.add(**row(n)) for n in range(3)]
        sync.push_now(30)
        files = sorted((tmp_path / "hub" / "feedback").glob("*.jsonl"))
        assert len(files) == 1 and files[0].name == sync.file.name  # one UUID-named file per process
        first = files[0].read_bytes()
        assert remote_rows(tmp_path) == [as_record(r) for r in store.rows()]
        assert [r["id"] for r in remote_rows(tmp_path)] == ids
        store.add(**row(3))
        store.add(**row(4))
        sync.push_now(30)
        after = files[0].read_bytes()
        assert after.startswith(first) and after != first  # appended, never rewritten
        assert remote_rows(tmp_path) == [as_record(r) for r in store.rows()]
        assert "last pushed to the private dataset `me/laffi-feedback`" in sync.status()
    finally:
        sync.close()


def test_a_restarted_space_shows_what_it_had(tmp_path):
    first = FeedbackStore(tmp_path / "space1" / "feedback.sqlite")
    sync = make_sync(first, tmp_path, name="q1").start()
    for n in range(4):
        first.add(**row(n))
    sync.close()  # what a stopped Space does (exit hook or SIGTERM): the final push
    # The restart: a new, empty disk and a new process - only the dataset is left.
    second = FeedbackStore(tmp_path / "space2" / "feedback.sqlite")
    sync2 = make_sync(second, tmp_path, name="q2").start()
    assert sync2.restored == 4 and sync2.queued == 0
    assert second.rows() == first.rows()  # ids and every column, as they were
    assert "4 rows restored" in sync2.status()
    second.add(**row(9))
    sync2.close()
    assert len(list((tmp_path / "hub" / "feedback").glob("*.jsonl"))) == 2  # one file per process
    third = FeedbackStore(tmp_path / "space3" / "feedback.sqlite")
    sync3 = make_sync(third, tmp_path, name="q3").start()
    assert [r["question"] for r in third.rows()] == [f"Question {n}?" for n in (0, 1, 2, 3, 9)]
    assert make_sync(third, tmp_path, name="q4").start().restored == 0  # a second restore adds nothing
    sync3.close()


def test_a_withdrawal_reaches_the_dataset_and_survives_restarts(tmp_path):
    first = FeedbackStore(tmp_path / "space1" / "feedback.sqlite")
    sync = make_sync(first, tmp_path, name="q1").start()
    for n in range(3):
        first.add(**row(n))
    sync.push_now(30)
    assert {r.get("session_id") for r in remote_rows(tmp_path)} == {"s0", "s1", "s2"}
    first.withdraw("s1")
    sync.close()
    # this process's file no longer holds the session's rows; a marker says it was withdrawn
    rows = remote_rows(tmp_path)
    assert [r["session_id"] for r in rows if "session_id" in r] == ["s0", "s2"]
    assert [r for r in rows if "withdrawn_session" in r][0]["withdrawn_session"] == "s1"
    # a restart restores the others, never the withdrawn ones, and knows about the withdrawal
    second = FeedbackStore(tmp_path / "space2" / "feedback.sqlite")
    make_sync(second, tmp_path, name="q2").start().close()
    assert [r["session_id"] for r in second.rows(withdrawn=True)] == ["s0", "s2"]
    assert second.withdrawn() == {"s1"}


def test_a_failed_push_is_retried_and_nothing_is_lost(tmp_path):
    store = FeedbackStore(tmp_path / "a" / "feedback.sqlite")
    sync = make_sync(store, tmp_path).start()
    try:
        sync.scheduler.down = True
        for n in range(3):
            store.add(**row(n))
        with pytest.raises(ConnectionError):
            sync.push_now(30)
        status = sync.status()
        assert "last push to the private dataset `me/laffi-feedback` failed" in status and "ConnectionError" in status
        assert remote_rows(tmp_path) == []
        sync.scheduler.down = False
        sync.push_now(30)
        assert remote_rows(tmp_path) == [as_record(r) for r in store.rows()]
        assert "failed" not in sync.status()
    finally:
        sync.close()


def test_the_scheduler_itself_retries_at_its_next_tick(tmp_path):
    store = FeedbackStore(tmp_path / "a" / "feedback.sqlite")
    sync = make_sync(store, tmp_path, every=0.002).start()  # a tick every 0.12 s
    try:
        sync.scheduler.down = True
        store.add(**row(1))
        assert wait_for(lambda: sync.scheduler.last_failure is not None)
        sync.scheduler.down = False
        assert wait_for(lambda: len(remote_rows(tmp_path)) == 1)
    finally:
        sync.close()


class FlakyApi(OfflineApi):
    """The Hub is down for the first `down` create_repo calls (a Space starting without network)."""

    def __init__(self, down: int):
        super().__init__()
        self.down = down

    def create_repo(self, repo_id, **kwargs):
        if self.down:
            self.down -= 1
            raise ConnectionError("Name or service not known")
        return super().create_repo(repo_id, **kwargs)


def test_a_failed_start_up_is_retried_and_rows_wait_on_disk(tmp_path):
    store = FeedbackStore(tmp_path / "a" / "feedback.sqlite")
    store.add(**row(0))  # collected before the sync was turned on: queued too
    sync = make_sync(store, tmp_path, every=0.002, api=FlakyApi(down=1)).start()
    try:
        assert sync.scheduler is None or wait_for(lambda: sync.restored is not None)
        if sync.scheduler is None:  # still within the first retry's wait
            assert "not reaching the dataset" in sync.status() and "ConnectionError" in sync.status()
        store.add(**row(1))
        assert wait_for(lambda: sync.restored is not None)
        assert sync.queued >= 1
        sync.push_now(30)
        assert sorted(r["question"] for r in remote_rows(tmp_path)) == ["Question 0?", "Question 1?"]
    finally:
        sync.close()


def test_the_store_reports_rows_and_restores_without_duplicates(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    seen = []
    store.listeners += [seen.append, lambda r: 1 / 0]  # a failing listener does not undo a stored row
    row_id = store.add(**row(1))
    assert seen == [as_record(store.rows()[0])] and seen[0]["id"] == row_id
    other = FeedbackStore(tmp_path / "other.sqlite")
    other.add(**row(7))  # takes id 1: the restored row 1 gets a new id, nothing is overwritten
    assert other.insert_rows(store.rows() + store.rows()) == 1
    assert other.insert_rows(store.rows()) == 0
    assert [r["question"] for r in other.rows()] == ["Question 7?", "Question 1?"]


def test_status_without_a_dataset_says_where_feedback_lives():
    assert "lost" not in sync_status(None, Settings.from_env({}))
    on_space = sync_status(None, Settings.from_env({"SPACE_ID": "me/laffi"}))
    assert "loses at every restart" in on_space and "LAFFI_FEEDBACK_REPO and HF_TOKEN" in on_space


def test_push_minutes_setting():
    assert Settings.from_env({"LAFFI_FEEDBACK_PUSH_MINUTES": "2.5"}).feedback_push_minutes == 2.5
    assert Settings.from_env({}).feedback_push_minutes == 5.0  # the Hub's advice: not more often than 5 min
    for bad in ("soon", "0"):
        with pytest.raises(LaffiError, match="LAFFI_FEEDBACK_PUSH_MINUTES"):
            Settings.from_env({"LAFFI_FEEDBACK_PUSH_MINUTES": bad})
    assert Settings.from_env({"LAFFI_FEEDBACK_REPO": "me/x", "HF_TOKEN": "t"}).feedback_sync
    assert not Settings.from_env({"LAFFI_FEEDBACK_REPO": "me/x"}).feedback_sync


CHILD = """
import sys, time
from pathlib import Path
from laffi.feedback.store import FeedbackStore
from laffi.feedback.hub_sync import FeedbackSync, push_on_sigterm
from tests.hub_fakes import FolderScheduler, OfflineApi
tmp = Path(sys.argv[1])
store = FeedbackStore(tmp / "child" / "feedback.sqlite")
sync = FeedbackSync(store, "me/laffi-feedback", None, tmp / "child-queue", every=60,
                    scheduler_class=FolderScheduler, remote=tmp / "hub", hf_api=OfflineApi()).start()
push_on_sigterm(sync)
for n in range(3):
    store.add(question=f"Q{n}?", answer="a", variant="base", created_at=1000.0 + n)
print("ready", flush=True)
if sys.argv[2] == "wait":
    time.sleep(120)
"""


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_a_new_process_pushes_its_last_rows_when_it_stops(tmp_path, how):
    """No close(): the scheduler's exit hook pushes at a normal exit, and push_on_sigterm when a Space is
    stopped with SIGTERM (which skips exit hooks)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path),
                             "wait" if how == "sigterm" else "exit"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.poll() is not None else ""
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        proc.kill()
    assert code == (-signal.SIGTERM if how == "sigterm" else 0), proc.stderr.read()
    assert [r["question"] for r in remote_rows(tmp_path)] == ["Q0?", "Q1?", "Q2?"]
    store = FeedbackStore(tmp_path / "restarted" / "feedback.sqlite")
    sync = make_sync(store, tmp_path, name="q2").start()
    assert [r["created_at"] for r in store.rows()] == [1000.0, 1001.0, 1002.0]
    sync.close()


def test_push_on_sigterm_only_in_the_main_thread(tmp_path):
    import threading

    result = []
    t = threading.Thread(target=lambda: result.append(push_on_sigterm(object())))
    t.start()
    t.join()
    assert result == [False]

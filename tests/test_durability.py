"""Nothing collected is lost: concurrent writers, a writer killed mid-stream, exports that crash half-way."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from laffi.feedback.store import FeedbackStore
from laffi.io import write_jsonl_atomic

REPO = Path(__file__).resolve().parent.parent


WRITER = textwrap.dedent("""
    import sys
    from laffi.feedback.store import FeedbackStore
    store = FeedbackStore(sys.argv[1])
    for i in range(20):
        print(store.add(variant="sft", critique=f"w{sys.argv[2]}-r{i}", annotator=f"writer-{sys.argv[2]}"), flush=True)
""")


def test_50_concurrent_writer_processes_20_records_each_all_stored(tmp_path):
    path = tmp_path / "feedback.sqlite"
    FeedbackStore(path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for w in range(50)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * 50, [err for _, err in outs if err][:1]
    acked = [int(line) for out, _ in outs for line in out.split()]
    rows = FeedbackStore(path).rows()
    assert len(rows) == 1000 and sorted(acked) == sorted(r["id"] for r in rows)
    assert {r["critique"] for r in rows} == {f"w{w}-r{i}" for w in range(50) for i in range(20)}


KILLED_WRITER = textwrap.dedent("""
    import sys
    from laffi.feedback.store import FeedbackStore
    store = FeedbackStore(sys.argv[1])
    i = 0
    while True:
        rid = store.add(variant="base", critique=f"record {i}", context="x" * 2000)
        print(rid, flush=True)   # the acknowledgement: only printed once add() returned
        i += 1
""")


def test_writer_killed_with_sigkill_loses_no_acknowledged_record(tmp_path):
    path = tmp_path / "feedback.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    acked = []
    deadline = time.time() + 60
    while len(acked) < 60 and time.time() < deadline:
        acked.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of the stream: more adds were under way
    proc.wait(timeout=10)
    assert len(acked) == 60
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {row[0] for row in con.execute("SELECT id FROM feedback")}
    con.close()
    assert set(acked) <= stored
    assert len(FeedbackStore(path).rows()) == len(stored)  # and the store opens and reads cleanly again


def test_export_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "export.jsonl"
    write_jsonl_atomic(target, [{"n": 1}, {"n": 2}])

    def rows():
        yield {"n": 10}
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_jsonl_atomic(target, rows())
    assert [json.loads(x) for x in target.read_text().splitlines()] == [{"n": 1}, {"n": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.jsonl"]


SLOW_EXPORT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from laffi.io import write_jsonl_atomic
    def rows():
        for i in range(10_000):
            if i == 50:
                print("half-way", flush=True)
            time.sleep(0.01)
            yield {"n": i, "text": "y" * 500}
    write_jsonl_atomic(Path(sys.argv[1]), rows())
""")


def test_export_killed_mid_write_never_leaves_a_half_file_under_the_final_name(tmp_path):
    target = tmp_path / "feedback.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EXPORT, str(target)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.stdout.readline().strip() == "half-way"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert not target.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert all(name.startswith(".feedback.jsonl.tmp-") for name in leftovers)  # hidden, never the final name

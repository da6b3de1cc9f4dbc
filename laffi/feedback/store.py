"""Human feedback: a durable SQLite store (one row per feedback event) and CSV/JSONL import.

Usage:
    store = FeedbackStore("data/feedback.sqlite")            # LAFFI_DATA_DIR decides the folder in the app
    store.add(question=..., context=..., answer=..., critique="Incorrect: ...", annotator="ana", variant="base")
    store.listeners.append(fn)                               # fn(row) after each add() is committed (hub sync)
    store.insert_rows(rows)                                  # restore rows kept elsewhere; those present are skipped
    store.withdraw("session id")                             # a participant takes their feedback back
    FeedbackStore("old.sqlite")                              # an older store gains the newer columns, rows kept
    rows, problems = read_human_feedback("feedback.csv")     # or .jsonl, or a .sqlite store

A row holds passage, question, the answer it judged, the variant's predicted self-feedback on it with that
feedback's verdict (predicted_verdict; an older store gains the column when opened), the critique, the rating and
an optional correct answer: a complete LaFFi example (input = passage + question + answer, target = the
critique), whatever the passage - the presenter's own text needs no SQuAD question to match. A rating without a critique gets feedback in the
annotator's format (laffi.feedback.annotation) from the rating and the correct answer, and says so in feedback_source; a
known right answer (the correct answer given, or the answer rated 👍) also makes an SFT row. Rows that match a
SQuAD question still join it by qid or question text (read_human_feedback, the hybrid mix). Each add() is its own
committed transaction in WAL mode, so what add() returned is on disk even if the process dies right after.
Withdrawn sessions' rows stay in the file (nothing is deleted behind the user's back) but are left out of every
read: the Feedback tab, exports, training and the Hub copy.
"""

from __future__ import annotations

import csv
import logging
import sqlite3
import time
from pathlib import Path
from typing import Callable

from laffi.errors import LaffiError
from laffi.io import parse_jsonl

COLUMNS = ("session_id", "created_at", "variant", "adapter", "qid", "context", "question", "answer",
           "predicted_feedback", "predicted_verdict", "thumbs", "critique", "correct_answer", "annotator")
# Columns added since the first stores: an older file gets them when it is opened (ALTER TABLE ADD COLUMN, every
# row kept) and its rows' values filled in. predicted_verdict ("correct", "partly", "incorrect" or NULL) is read
# from predicted_feedback, so it does not tell two feedback events apart (row_key leaves it out): a Hub copy
# written before it existed still matches the rows here.
ADDED = ("predicted_verdict",)
DERIVED = ("predicted_verdict",)
KEY_COLUMNS = tuple(c for c in COLUMNS if c not in DERIVED)

_SCHEMA = f"""CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{c} {'REAL' if c == 'created_at' else 'INTEGER' if c == 'thumbs' else 'TEXT'}" for c in COLUMNS)}
)"""
_WITHDRAWALS = "CREATE TABLE IF NOT EXISTS withdrawals (session_id TEXT PRIMARY KEY, created_at REAL)"
_VISIBLE = "session_id IS NULL OR session_id NOT IN (SELECT session_id FROM withdrawals)"


log = logging.getLogger(__name__)
WITHDRAWN = "withdrawn_session"  # a listener record {WITHDRAWN: session id, "created_at"} (not a feedback row)


def row_key(row: dict) -> tuple:
    """What makes two rows the same feedback event wherever they were stored: every column but the local id and
    the derived ones (created_at is a float to the microsecond, and survives JSON and SQLite unchanged)."""
    return tuple(row.get(c) for c in KEY_COLUMNS)


def with_verdict(fields: dict) -> dict:
    """The row with predicted_verdict read from its predicted_feedback (laffi.inference.prompts.parse_feedback,
    as the Ask tab reads it) where it has none: every row whose answer had a predicted self-feedback records it."""
    from laffi.inference.prompts import parse_feedback

    if fields.get("predicted_verdict") is None and (fields.get("predicted_feedback") or "").strip():
        return {**fields, "predicted_verdict": parse_feedback(fields["predicted_feedback"])[0]}
    return fields


def as_record(row: dict) -> dict:
    """A row as JSON-ready data: the id, then every column (None where unset), in one fixed order."""
    return {"id": row.get("id"), **{c: row.get(c) for c in COLUMNS}}


class FeedbackStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Called with each added row (as_record) once it is committed; a failing listener is logged, and the
        # row stays stored: the audience's "saved" must not depend on anything but this file.
        self.listeners: list[Callable[[dict], None]] = []
        try:
            con = self._connect()
        except sqlite3.DatabaseError as e:  # not SQLite at all
            raise LaffiError(f"{self.path} is not the app's feedback store (not an SQLite file).") from e
        with con:
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(_SCHEMA)
                con.execute(_WITHDRAWALS)
                columns = {r[1] for r in con.execute("PRAGMA table_info(feedback)")}
            except sqlite3.DatabaseError as e:  # not SQLite at all
                raise LaffiError(f"{self.path} is not the app's feedback store (not an SQLite file).") from e
            if not set(COLUMNS) - set(ADDED) <= columns:
                raise LaffiError(f"{self.path} is not the app's feedback store: its feedback table lacks "
                                 f"{', '.join(sorted(set(COLUMNS) - set(ADDED) - columns))}.")
        if not set(ADDED) <= columns:
            self._migrate()

    def _migrate(self) -> None:
        """Add the columns an older store lacks and fill them in for the rows it holds, in one transaction (a
        second process opening the same file at once waits, then finds them there)."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            columns = {r[1] for r in con.execute("PRAGMA table_info(feedback)")}
            for c in ADDED:
                if c not in columns:
                    con.execute(f"ALTER TABLE feedback ADD COLUMN {c} TEXT")
            for r in con.execute("SELECT id, predicted_feedback FROM feedback WHERE predicted_verdict IS NULL "
                                 "AND predicted_feedback IS NOT NULL").fetchall():
                verdict = with_verdict(dict(r))["predicted_verdict"]
                if verdict is not None:
                    con.execute("UPDATE feedback SET predicted_verdict = ? WHERE id = ?", (verdict, r["id"]))
            con.execute("COMMIT")
        finally:
            con.close()  # without the COMMIT (an error above), closing rolls the migration back: nothing changes

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # autocommit; explicit BEGIN below
        con.execute("PRAGMA synchronous=FULL")  # an acknowledged row survives power loss, not just a crash
        con.row_factory = sqlite3.Row
        return con

    def add(self, **fields) -> int:
        unknown = set(fields) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown feedback fields: {sorted(unknown)}")
        fields = with_verdict(fields)
        fields.setdefault("created_at", time.time())
        cols = list(fields)
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            cur = con.execute(f"INSERT INTO feedback ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                              [fields[c] for c in cols])
            con.execute("COMMIT")
            row_id = int(cur.lastrowid)
        finally:
            con.close()
        self._tell(as_record({"id": row_id, **fields}))
        return row_id

    def insert_rows(self, rows: list[dict]) -> int:
        """Insert rows kept elsewhere (a Hub dataset), skipping those already here (same row_key); each keeps
        its id where that id is free. One transaction; listeners are not called. Returns how many were new."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            present = {row_key(dict(r)) for r in con.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM feedback")}
            ids = {r[0] for r in con.execute("SELECT id FROM feedback")}
            added = 0
            for row in sorted(rows, key=lambda r: (r.get("created_at") or 0, r.get("id") or 0)):
                key = row_key(row)
                if key in present:
                    continue
                cols = list(COLUMNS)
                values = [with_verdict(row).get(c) for c in COLUMNS]
                if isinstance(row.get("id"), int) and row["id"] not in ids:
                    cols, values = ["id", *cols], [row["id"], *values]
                cur = con.execute(f"INSERT INTO feedback ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                  values)
                present.add(key)
                ids.add(int(cur.lastrowid))
                added += 1
            con.execute("COMMIT")
            return added
        finally:
            con.close()  # without the COMMIT (an error above), closing rolls the whole restore back

    def rows(self, where: str = "", params: tuple = (), withdrawn: bool = False) -> list[dict]:
        """Rows in id order; `where` is an SQL condition ("WHERE ..."); withdrawn sessions' rows only if asked."""
        cond = where.strip()
        if not withdrawn:
            cond = f"WHERE ({_VISIBLE})" + (f" AND ({cond[len('WHERE'):].strip()})" if cond else "")
        con = self._connect()
        try:
            return [dict(r) for r in con.execute(f"SELECT * FROM feedback {cond} ORDER BY id", params)]
        finally:
            con.close()

    def withdraw(self, session_id: str) -> int:
        """Withdraw every row of one session from every later read (exports, training, the Hub copy); returns how
        many rows that covers. A session id with no feedback is a user error (a typo would withdraw nothing)."""
        sid = (session_id or "").strip()
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            n = con.execute("SELECT count(*) FROM feedback WHERE session_id = ?", (sid,)).fetchone()[0]
            if not sid or not n:
                con.execute("ROLLBACK")
                raise LaffiError(f"No feedback was given in a session with the id {sid!r}; copy the id the page "
                                 "shows under the feedback form.")
            now = time.time()
            con.execute("INSERT OR IGNORE INTO withdrawals (session_id, created_at) VALUES (?, ?)", (sid, now))
            con.execute("COMMIT")
        finally:
            con.close()
        self._tell({WITHDRAWN: sid, "created_at": now})  # the Hub copy drops them too (laffi.feedback.hub_sync)
        return int(n)

    def _tell(self, record: dict) -> None:
        for listener in list(self.listeners):
            try:
                listener(record)
            except Exception:  # noqa: BLE001  (the listener reports its own trouble; the store has it)
                log.exception("a feedback listener failed on %s", record)

    def apply_withdrawals(self, session_ids) -> None:
        """Record withdrawals made elsewhere (another process's, restored from the Hub)."""
        con = self._connect()
        try:
            con.executemany("INSERT OR IGNORE INTO withdrawals (session_id, created_at) VALUES (?, ?)",
                            [(sid, time.time()) for sid in session_ids])
        finally:
            con.close()

    def withdrawn(self) -> set[str]:
        con = self._connect()
        try:
            return {r[0] for r in con.execute("SELECT session_id FROM withdrawals")}
        finally:
            con.close()


def _as_human_row(raw: dict, where: str) -> dict:
    text = raw.get("feedback") or raw.get("critique") or ""
    return {"qid": (raw.get("qid") or "").strip() or None, "question": raw.get("question") or "",
            "prediction": raw.get("prediction") if raw.get("prediction") is not None else raw.get("answer"),
            "feedback": str(text).strip(), "annotator": raw.get("annotator") or "anonymous", "_where": where}


def read_human_feedback(path: str | Path) -> tuple[list[dict], list[str]]:
    """Rows of human feedback from .csv, .jsonl or a FeedbackStore .sqlite file; malformed rows are reported."""
    p = Path(path)
    if not p.is_file():
        raise LaffiError(f"The human feedback file {str(p)!r} does not exist.")
    rows, problems = [], []
    if p.suffix in (".sqlite", ".db"):
        for r in FeedbackStore(p).rows("WHERE critique IS NOT NULL AND trim(critique) != ''"):
            rows.append(_as_human_row(r, f"{p.name} id {r['id']}"))
        return rows, problems
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LaffiError(f"{p} is not UTF-8 text; save it as UTF-8.") from e
    if p.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"feedback", "critique"} & set(reader.fieldnames):
            raise LaffiError(f"{p} needs a header with a 'feedback' (or 'critique') column, and 'qid' or "
                             "'question', 'prediction', 'annotator'.")
        for n, raw in enumerate(reader, 2):
            rows.append(_as_human_row(raw, f"{p.name} line {n}"))
    elif p.suffix == ".jsonl":
        for n, raw in enumerate(parse_jsonl(text, p.name, lenient=True, problems=problems), 1):
            if isinstance(raw, dict):
                rows.append(_as_human_row(raw, f"{p.name} record {n}"))
            else:
                problems.append(f"{p.name} record {n}: not a JSON object")
    else:
        raise LaffiError(f"{p} is not .csv, .jsonl or .sqlite; export human feedback in one of those.")
    return rows, problems


def read_feedback_rows(path: str | Path) -> list[dict]:
    """The rows of the app's store (.sqlite, withdrawn sessions left out) or of its JSONL export, as stored."""
    p = Path(path)
    if not p.is_file():
        raise LaffiError(f"The feedback file {str(p)!r} does not exist.")
    if p.suffix in (".sqlite", ".db"):
        return FeedbackStore(p).rows()
    from laffi.io import read_jsonl

    rows = read_jsonl(p)
    if not rows or not all(isinstance(r, dict) and {"context", "question", "answer"} <= set(r) for r in rows):
        raise LaffiError(f"{p} is not an export of the app's feedback (each line needs context, question and "
                         "answer); export it from the Feedback tab.")
    return rows


def is_feedback_file(path: str | Path) -> bool:
    """Whether `path` is the app's store or its JSONL export (what `train --data` then reads as feedback rows)."""
    p = Path(path)
    if p.suffix in (".sqlite", ".db"):
        return True
    if p.suffix != ".jsonl" or not p.is_file():
        return False
    with open(p, encoding="utf-8") as f:
        first = f.readline()
    try:
        import json

        row = json.loads(first)
    except ValueError:
        return False
    return isinstance(row, dict) and {"critique", "thumbs", "context", "answer"} <= set(row)

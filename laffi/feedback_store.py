"""Human feedback: a durable SQLite store (one row per feedback event) and CSV/JSONL import.

Usage:
    store = FeedbackStore("data/feedback.sqlite")            # LAFFI_DATA_DIR decides the folder in the app
    store.add(question=..., context=..., answer=..., critique="Incorrect: ...", annotator="ana", variant="base")
    store.listeners.append(fn)                               # fn(row) after each add() is committed (hub sync)
    store.insert_rows(rows)                                  # restore rows kept elsewhere; those present are skipped
    rows, problems = read_human_feedback("feedback.csv")     # or .jsonl, or a .sqlite store

A row's `critique` is `human` feedback for the LaFFi pipeline as it is: read_human_feedback returns rows with
qid, question, prediction, feedback and annotator, whatever the source. Each add() is its own committed
transaction in WAL mode, so what add() returned is on disk even if the process dies right after.
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
           "predicted_feedback", "thumbs", "critique", "correct_answer", "annotator")

_SCHEMA = f"""CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{c} {'REAL' if c == 'created_at' else 'INTEGER' if c == 'thumbs' else 'TEXT'}" for c in COLUMNS)}
)"""


log = logging.getLogger(__name__)


def row_key(row: dict) -> tuple:
    """What makes two rows the same feedback event wherever they were stored: every column but the local id
    (created_at is a float to the microsecond, and survives JSON and SQLite unchanged)."""
    return tuple(row.get(c) for c in COLUMNS)


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
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # autocommit; explicit BEGIN below
        con.execute("PRAGMA synchronous=FULL")  # an acknowledged row survives power loss, not just a crash
        con.row_factory = sqlite3.Row
        return con

    def add(self, **fields) -> int:
        unknown = set(fields) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown feedback fields: {sorted(unknown)}")
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
        record = as_record({"id": row_id, **fields})
        for listener in list(self.listeners):
            try:
                listener(record)
            except Exception:  # noqa: BLE001  (the listener reports its own trouble; the row is stored)
                log.exception("a feedback listener failed on row %s", row_id)
        return row_id

    def insert_rows(self, rows: list[dict]) -> int:
        """Insert rows kept elsewhere (a Hub dataset), skipping those already here (same row_key); each keeps
        its id where that id is free. One transaction; listeners are not called. Returns how many were new."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            present = {row_key(dict(r)) for r in con.execute(f"SELECT {', '.join(COLUMNS)} FROM feedback")}
            ids = {r[0] for r in con.execute("SELECT id FROM feedback")}
            added = 0
            for row in sorted(rows, key=lambda r: (r.get("created_at") or 0, r.get("id") or 0)):
                key = row_key(row)
                if key in present:
                    continue
                cols = list(COLUMNS)
                values = list(key)
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

    def rows(self, where: str = "", params: tuple = ()) -> list[dict]:
        con = self._connect()
        try:
            return [dict(r) for r in con.execute(f"SELECT * FROM feedback {where} ORDER BY id", params)]
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

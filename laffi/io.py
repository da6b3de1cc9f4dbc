"""Files laffi writes and reads: atomic writes (never half a file under its name) and one JSONL reader.

Usage:
    write_json_atomic(path, obj); write_jsonl_atomic(path, rows); write_text_atomic(path, text)
    rows = read_jsonl(path)                      # strict: a bad line is a LaffiError naming file and line
    rows = read_jsonl(path, lenient=True)        # skips bad lines (a log whose last line a crash cut short)
    rows = parse_jsonl(text, where)              # the same, on text already read
    file_digest(path)                            # the first 16 hex digits of its SHA-256 (read in 4 MB chunks)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from laffi.errors import LaffiError


def file_digest(path: str | os.PathLike) -> str:
    """The first 16 hex digits of the file's SHA-256: a cache key (a converted GGUF) or a record of which file
    numbers came from (laffi.squad.data.dataset_record)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def write_atomic(path: str | os.PathLike, write) -> None:
    """Call write(file) on a temporary file beside `path`, flush it to disk, then rename it over `path`: a crash
    or an error at any point leaves `path` as it was (absent, or the previous complete file), never half written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda f: f.write(text))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_atomic(path, lambda f: f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n"))


def write_jsonl_atomic(path: str | os.PathLike, rows) -> None:
    write_atomic(path, lambda f: f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def parse_jsonl(text: str, where: str, lenient: bool = False, problems: list | None = None) -> list:
    """One JSON value per non-empty line. Strict: a bad line is an error naming the file and line; lenient: bad
    lines are skipped (for append-only logs, whose last line a crash may have cut), and described in `problems`
    when a list is given."""
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if not lenient:
                raise LaffiError(f"{where} line {i} is not valid JSON ({e.msg}).") from e
            if problems is not None:
                problems.append(f"{where} line {i}: not valid JSON ({e.msg})")
    return rows


def read_jsonl(path: str | os.PathLike, lenient: bool = False) -> list:
    """Rows of a JSONL file. Strict (default): a missing file or a bad line is a LaffiError that says what to do;
    lenient: a missing file is no rows and bad lines are skipped."""
    p = Path(path)
    if not p.is_file():
        if lenient:
            return []
        raise LaffiError(f"The file {str(p)!r} does not exist; run the stage that writes it first.")
    return parse_jsonl(p.read_text(encoding="utf-8", errors="replace" if lenient else "strict"), str(p), lenient)

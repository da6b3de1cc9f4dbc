"""The demo loop: every feedback row is a training row (no SQuAD match needed), withdrawal, and training on it."""

import json

import pytest

from laffi.errors import LaffiError
from laffi.feedback.annotation import feedback_examples
from laffi.feedback.store import FeedbackStore, is_feedback_file, read_feedback_rows

PASSAGE = ("The Corran ferry has crossed the Lune estuary since 1911. Its first boat, the Heron, carried twelve "
           "passengers; the present one, built in 1988, carries eighty.")


def fill(store: FeedbackStore) -> list[int]:
    """Three 👎 with critiques and correct answers and one 👍, from two sessions, on a passage written here."""
    ids = [store.add(session_id="s1", variant="base", context=PASSAGE, question="When did the ferry start?",
                     answer="1988", thumbs=-1, critique="Incorrect: 1988 is when the present boat was built.",
                     correct_answer="1911", annotator="ana"),
           store.add(session_id="s1", variant="sft", context=PASSAGE, question="What was the first boat called?",
                     answer="no answer", thumbs=-1, critique="Incorrect: the passage names it, the Heron.",
                     correct_answer="the Heron", annotator="ana"),
           store.add(session_id="s2", variant="laffi", context=PASSAGE, question="Who built the present boat?",
                     answer="the Heron", thumbs=-1, critique="Incorrect: the passage does not say who built it.",
                     correct_answer="no answer", annotator="ben"),
           store.add(session_id="s2", variant="sft", context=PASSAGE, question="How many does the present one carry?",
                     answer="eighty", thumbs=1, annotator="ben")]
    return ids


def test_every_row_is_a_training_row(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    ids = fill(store)
    store.add(session_id="s3", context=PASSAGE, question="Is it safe?", answer="yes", thumbs=-1)  # says nothing
    records, report = feedback_examples(store.rows())
    assert [r["feedback_row_id"] for r in records] == ids
    assert report["usable"] == 4 and report["sessions"] == 2 and report["raters"] == 2 and len(report["skipped"]) == 1
    first, _, third, liked = records
    assert first["feedback"].startswith("Incorrect: 1988") and first["feedback_source"] == "human"
    assert first["prediction"] == "1988" and first["answers"] == ["1911"] and first["gold_known"]
    assert third["answers"] == [] and third["gold_known"]  # "no answer" as the correct answer: unanswerable
    # a 👍 with no critique: feedback in the annotator's format, said so
    assert liked["feedback_source"] == "human-rating" and liked["feedback"].startswith("Correct")
    assert "so the answer should be eighty" in liked["feedback"]


def test_sft_rows_only_where_the_right_answer_is_known(tmp_path, tiny_lm):
    from laffi.training.rows import training_rows

    store = FeedbackStore(tmp_path / "feedback.sqlite")
    fill(store)
    store.add(session_id="s4", context=PASSAGE, question="Why?", answer="because", critique="Incorrect: it says no why.")
    records, _ = feedback_examples(store.rows())
    rows = training_rows(records, "laffi+sft", tiny_lm.tokenizer)
    assert sum(r["group"].startswith("sft") for r in rows) == 4 and sum(r["group"].startswith("laffi") for r in rows) == 5
    assert {r["feedback_row_id"] for r in rows} == {r["feedback_row_id"] for r in records}


def test_withdrawal_leaves_rows_out_of_every_read(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    fill(store)
    assert store.withdraw("s1") == 2
    assert {r["session_id"] for r in store.rows()} == {"s2"}
    assert len(store.rows(withdrawn=True)) == 4  # kept in the file, never read for exports or training
    assert [r["feedback_row_id"] for r in feedback_examples(read_feedback_rows(store.path))[0]] == [3, 4]
    with pytest.raises(LaffiError, match="No feedback was given in a session with the id 'nobody'"):
        store.withdraw("nobody")


def test_a_file_that_is_not_the_store_is_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    import sqlite3

    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY, note TEXT)")
    with pytest.raises(LaffiError, match="is not the app's feedback store"):
        FeedbackStore(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(LaffiError, match="is not the app's feedback store"):
        FeedbackStore(junk)


def test_train_from_the_store_on_the_command_line(tmp_path, tiny_dir, capsys):
    from laffi.cli import main

    store = FeedbackStore(tmp_path / "feedback.sqlite")
    ids = fill(store)
    export = tmp_path / "export.jsonl"
    export.write_text("".join(json.dumps(r) + "\n" for r in store.rows()))
    assert is_feedback_file(store.path) and is_feedback_file(export)
    for data, name in ((store.path, "live"), (export, "from-export")):
        assert main(["train", "--method", "laffi", "--name", name, "--base", str(tiny_dir), "--data", str(data),
                     "--adapters_dir", str(tmp_path / "adapters"), "--work_dir", str(tmp_path / "work" / name),
                     "--r", "4", "--alpha", "8", "--max_steps", "2", "--batch_size", "2"]) == 0
        manifest = json.loads((tmp_path / "adapters" / name / "data_manifest.json").read_text())
        assert manifest["feedback_rows"] == ids and manifest["heldout_examples"] == 1
        assert manifest["feedback_sources"] in ({"human": 3}, {"human": 2, "human-rating": 1})
    assert "4 feedback rows from 2 sessions and 2 raters" in capsys.readouterr().err
    empty = FeedbackStore(tmp_path / "empty.sqlite")
    assert main(["train", "--base", str(tiny_dir), "--data", str(empty.path), "--name", "x",
                 "--adapters_dir", str(tmp_path / "adapters")]) == 2
    assert "holds no usable feedback yet" in capsys.readouterr().err

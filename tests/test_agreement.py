"""LaFFi's predicted feedback scored against the room's (laffi.feedback.agreement): the numbers on a fixture of
rated rows worked out by hand, an older store gaining the predicted verdict without losing a row, the
/feedback_agreement endpoint after an Ask and a rating (disagreeing rows only to whom the Feedback list shows
them), and a rating stored while an Ask holds the model."""

import sqlite3
import threading

import pytest

from laffi.evaluation.stats import wilson_interval
from laffi.feedback.agreement import agreement, agreement_table, report
from laffi.feedback.store import FeedbackStore

from .conftest import launch_app

PASSAGE = "The Halvard lighthouse was lit in 1874 and converted to electricity in 1952."


def rated(store, variant, thumbs, predicted, critique=None, session="s1", correct=None):
    return store.add(session_id=session, variant=variant, context=PASSAGE, question="When was it lit?",
                     answer="1874", predicted_feedback=predicted, thumbs=thumbs, critique=critique,
                     correct_answer=correct)


@pytest.fixture
def fixture_store(tmp_path):
    """laffi: 7 rows that count (4 agree), 3 that do not; sft: 2 that count, both rated right and called correct."""
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    ids = {
        "right-correct-1": rated(store, "laffi", 1, "Correct: the passage says 1874."),
        "right-correct-2": rated(store, "laffi", 1, "Correct."),
        "right-called-wrong": rated(store, "laffi", 1, "Incorrect: it was 1952."),
        "wrong-not-correct": rated(store, "laffi", -1, "Incorrect: the lamp came later."),
        "wrong-called-correct": rated(store, "laffi", -1, "Correct, it says so."),
        "critique-wrong-partly": rated(store, "laffi", None, "Partly correct: a year too early.",
                                       critique="Incorrect: it was lit in 1874, not built."),
        "wrong-no-verdict": rated(store, "laffi", -1, "The answer names a year."),
        "not-rated": rated(store, "laffi", None, "Correct.", correct="1874"),  # a correct answer only: no verdict
        "no-prediction": rated(store, "laffi", 1, None),
        "withdrawn": rated(store, "laffi", 1, "Incorrect.", session="gone"),
        "sft-1": rated(store, "sft", 1, "Correct."),
        "sft-2": rated(store, "sft", 1, "Correct: 1874."),
    }
    store.withdraw("gone")
    return store, ids


def test_agreement_numbers_match_the_hand_count(fixture_store):
    store, ids = fixture_store
    stats = agreement(store.rows())
    assert list(stats) == ["laffi", "sft"]
    laffi = stats["laffi"]
    assert (laffi.rated, laffi.agreed) == (7, 4)
    assert laffi.confusion == {"participant_right": {"predicted_correct": 2, "predicted_not_correct": 1,
                                                     "no_verdict": 0},
                               "participant_wrong": {"predicted_correct": 1, "predicted_not_correct": 2,
                                                     "no_verdict": 1}}
    assert laffi.agreement == pytest.approx(100 * 4 / 7)
    # rated right: 2 of 3 called correct; rated wrong: 3 of 4 not called correct (a missing verdict is not
    # "correct", as in the evaluation) -> (66.67 + 75) / 2
    assert laffi.balanced_accuracy == pytest.approx((100 * 2 / 3 + 75) / 2)
    assert laffi.majority == pytest.approx(100 * 4 / 7)  # 4 of its 7 answers were rated wrong
    # Wilson, 4 of 7, z = 1.96: centre (4/7 + z²/14) / (1 + z²/7) = 0.5461, half-width 0.2957
    lo, hi = laffi.interval
    assert (lo, hi) == (pytest.approx(25.05, abs=0.01), pytest.approx(84.18, abs=0.01))
    assert [r["id"] for r in laffi.disagreements] == [ids["right-called-wrong"], ids["wrong-called-correct"],
                                                      ids["wrong-no-verdict"]]
    sft = stats["sft"]
    assert (sft.rated, sft.agreed, sft.agreement, sft.majority) == (2, 2, 100.0, 100.0)
    assert sft.balanced_accuracy is None  # no answer of sft's was rated wrong: one share is undefined
    assert sft.disagreements == []


def test_the_wilson_interval_is_the_textbook_one():
    assert wilson_interval(17, 20) == (pytest.approx(63.96, abs=0.01), pytest.approx(94.76, abs=0.01))
    lo, hi = wilson_interval(0, 5)
    assert lo == 0.0 and hi == pytest.approx(43.45, abs=0.01)  # never zero-width at 0 of n
    assert wilson_interval(0, 0) is None


def test_the_report_is_plain_json_and_hides_texts_it_may_not_show(fixture_store):
    import json

    store, ids = fixture_store
    full = report(store.rows())
    assert json.loads(json.dumps(full)) == full
    laffi = full["variants"][0]
    assert laffi["variant"] == "laffi" and laffi["interval"] == [25.0, 84.2] and laffi["agreement"] == 57.1
    assert laffi["balanced_accuracy"] == 70.8 and laffi["disagreements"] == 3
    assert [r["id"] for r in laffi["disagreement_rows"]] == [ids["right-called-wrong"], ids["wrong-called-correct"],
                                                            ids["wrong-no-verdict"]]
    assert "session_id" not in laffi["disagreement_rows"][0]
    assert full["rated"] == 9
    hidden = report(store.rows(), may_show=lambda row: False)
    assert hidden["variants"][0]["disagreements"] == 3 and hidden["variants"][0]["disagreement_rows"] == []
    assert [v["agreement"] for v in hidden["variants"]] == [v["agreement"] for v in full["variants"]]
    table = agreement_table(full["variants"])
    assert table[0][:7] == ["laffi", 7, 4, "57.1", "[25.0, 84.2]", "70.8", "57.1"]
    assert table[0][7:] == [2, 1, 1, 2, 1] and table[1][5] == "–"


def test_an_older_store_gains_the_predicted_verdict_and_keeps_every_row(tmp_path):
    old = tmp_path / "feedback.sqlite"
    columns = ("session_id", "created_at", "variant", "adapter", "qid", "context", "question", "answer",
               "predicted_feedback", "thumbs", "critique", "correct_answer", "annotator")  # before the verdict
    with sqlite3.connect(old) as con:
        con.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                    + ", ".join(f"{c} {'REAL' if c == 'created_at' else 'INTEGER' if c == 'thumbs' else 'TEXT'}"
                                for c in columns) + ")")
        for i, (fb, thumbs) in enumerate([("Incorrect: it was 1952.", 1), (None, -1), ("Correct.", -1)]):
            con.execute(f"INSERT INTO feedback ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                        ("s1", 1000.0 + i, "laffi", None, None, PASSAGE, f"q{i}", "1874", fb, thumbs, None, None,
                         None))
    store = FeedbackStore(old)
    rows = store.rows()
    assert [(r["id"], r["question"], r["predicted_verdict"]) for r in rows] == [
        (1, "q0", "incorrect"), (2, "q1", None), (3, "q2", "correct")]
    with sqlite3.connect(old) as con:
        assert "predicted_verdict" in {r[1] for r in con.execute("PRAGMA table_info(feedback)")}
    stats = agreement(rows)["laffi"]  # both old rows with a predicted feedback disagree with their rating
    assert (stats.rated, stats.agreed) == (2, 0)
    # a Hub copy of those rows, written before the column existed, is recognised: nothing restored twice
    copy = [{k: v for k, v in r.items() if k != "predicted_verdict"} for r in rows]
    assert store.insert_rows(copy) == 0
    row_id = rated(store, "laffi", 1, "Partly correct: close.")
    assert FeedbackStore(old).rows()[-1]["id"] == row_id and FeedbackStore(old).rows()[-1]["predicted_verdict"] == \
        "partly"
    assert len(FeedbackStore(old).rows()) == 4  # opening it again changes nothing


@pytest.fixture(scope="module")
def app(tiny_dir, tiny_adapters, tmp_path_factory):
    demo = launch_app(tmp_path_factory.mktemp("agreement"), tiny_dir, tiny_adapters)
    try:
        yield demo.local_url, demo.laffi_settings
    finally:
        demo.close()


def test_the_endpoint_scores_a_rated_answer_and_shows_texts_by_the_lists_rule(app):
    from gradio_client import Client

    from laffi.ui.room import set_room

    url, settings = app
    client = Client(url, verbose=False)
    empty = client.predict(api_name="/feedback_agreement")
    assert empty["variants"] == [] and empty["interval"] == "Wilson score interval, 95 %"
    result = client.predict(passage=PASSAGE, question="When was it lit?", api_name="/ask")[-2]
    client.predict(variant="laffi", rating="👎 bad answer", critique="", correct_answer="", annotator="",
                   api_name="/feedback")
    row = FeedbackStore(settings.data_dir / "feedback.sqlite").rows()[-1]
    assert row["predicted_feedback"] == result["variants"]["laffi"]["feedback"]
    assert row["predicted_verdict"] == result["variants"]["laffi"]["verdict"]  # as the Ask read it
    out = client.predict(api_name="/feedback_agreement")
    [laffi] = out["variants"]
    agreed = row["predicted_verdict"] in ("partly", "incorrect")  # rated 👎: "not correct" agrees
    assert (laffi["variant"], laffi["rated"], laffi["agreed"]) == ("laffi", 1, int(agreed))
    called = {"correct": "predicted_correct", None: "no_verdict"}.get(row["predicted_verdict"],
                                                                      "predicted_not_correct")
    assert laffi["confusion"]["participant_wrong"][called] == 1
    assert [r["id"] for r in laffi["disagreement_rows"]] == ([] if agreed else [row["id"]])
    # in a room without an admin password, another participant sees the numbers, not this one's texts
    FeedbackStore(settings.data_dir / "feedback.sqlite").add(
        session_id="someone-else", variant="laffi", context=PASSAGE, question="Who built it?", answer="Ole",
        predicted_feedback="Correct: Ole built it.", thumbs=-1, critique="Incorrect: it does not say.")
    set_room("http://192.0.2.1:7860/")
    try:
        mine = client.predict(api_name="/feedback_agreement")["variants"][0]
        theirs = Client(url, verbose=False).predict(api_name="/feedback_agreement")["variants"][0]
    finally:
        set_room(None)
    assert mine["rated"] == theirs["rated"] == 2 and mine["disagreements"] == theirs["disagreements"]
    assert theirs["disagreement_rows"] == []
    assert [r["id"] for r in mine["disagreement_rows"]] == ([] if agreed else [row["id"]])  # not someone-else's
    everyone = client.predict(api_name="/feedback_agreement")["variants"][0]  # this machine only: everyone's
    assert [r["question"] for r in everyone["disagreement_rows"]][-1] == "Who built it?"


def test_a_rating_is_stored_while_an_ask_holds_the_model(app, monkeypatch):
    """Generation blocked mid-Ask (the "model" group busy), and another participant's save blocked inside the
    store: a third save still completes, so feedback waits neither for the model nor for other saves."""
    from gradio_client import Client

    import laffi.feedback.store as store_module
    import laffi.inference.generation as generation

    url, settings = app
    rater, asker, other = (Client(url, verbose=False) for _ in range(3))
    for c in (rater, other):  # each has an answer to rate
        c.predict(passage=PASSAGE, question="When was it lit?", api_name="/ask")
    release, generating = threading.Event(), threading.Event()
    real_grid = generation.generate_grid

    def held_grid(*a, **k):
        generating.set()
        release.wait(timeout=120)
        return real_grid(*a, **k)

    saving, release_save = threading.Event(), threading.Event()
    real_add = store_module.FeedbackStore.add

    def held_add(self, **fields):
        if fields.get("annotator") == "held":
            saving.set()
            release_save.wait(timeout=120)
        return real_add(self, **fields)

    monkeypatch.setattr(generation, "generate_grid", held_grid)
    monkeypatch.setattr(store_module.FeedbackStore, "add", held_add)
    try:
        held_ask = asker.submit(passage=PASSAGE, question="When was the lamp converted?", api_name="/ask")
        assert generating.wait(timeout=60)  # the Ask is running, its generation blocked
        held_save = other.submit(variant="sft", rating="👍 good answer", critique="", correct_answer="",
                                 annotator="held", api_name="/feedback")
        assert saving.wait(timeout=60)  # another participant's save is inside the store, blocked
        saved = rater.submit(variant="base", rating="👎 bad answer", critique="Incorrect: it was 1874.",
                             correct_answer="1874", annotator="free", api_name="/feedback").result(timeout=30)
        assert saved[0].startswith("Saved feedback #")
        assert not held_ask.done() and not held_save.done()
        rows = FeedbackStore(settings.data_dir / "feedback.sqlite").rows()
        assert [r["annotator"] for r in rows].count("free") == 1 and "held" not in [r["annotator"] for r in rows]
    finally:
        release.set()
        release_save.set()
    assert held_save.result(timeout=60)[0].startswith("Saved feedback #")
    assert held_ask.result(timeout=120)[-2]["phase"] == "done"

"""A room at once, through gradio_client against one served app (tiny model): participants asking together are
answered together, each with the answers to its own question and its own session state; one who leaves
mid-stream frees its place; past LAFFI_QUEUE_SIZE a question gets a sentence, not an error."""

import threading
import time

import pytest

from .conftest import launch_app

PASSAGE = "The Halvard lighthouse was lit in 1874 and converted to electricity in 1952."
QUESTIONS = [f"When was the lighthouse lit? (participant {i})" for i in range(8)]


@pytest.fixture
def room(tiny_dir, tiny_adapters, tmp_path, monkeypatch):
    import laffi.inference.selffeedback as selffeedback

    monkeypatch.setattr(selffeedback, "FEEDBACK_MAX_NEW_TOKENS", 8)  # the room is the point, not reply length
    demo = launch_app(tmp_path, tiny_dir, tiny_adapters, max_new_tokens=8)
    yield demo
    demo.close()


def final(out) -> dict:
    """/ask's last result (the JSON output): the question it answered and every variant's answer and feedback."""
    return out[-2]


def test_eight_participants_at_once_each_get_their_own_answers_and_state_in_shared_batches(room):
    from gradio_client import Client

    alone = {}
    for q in QUESTIONS:  # one at a time first: what each question gets on its own
        alone[q] = final(Client(room.local_url, verbose=False).predict(passage=PASSAGE, question=q, api_name="/ask"))
    before = room.laffi_scheduler.stats()
    got, stored, errors = {}, {}, []
    start = threading.Barrier(len(QUESTIONS))

    def participant(q):
        try:
            client = Client(room.local_url, verbose=False)
            start.wait(timeout=60)
            got[q] = final(client.predict(passage=PASSAGE, question=q, api_name="/ask"))
            # the feedback goes with the answer this participant's own session state holds
            stored[q] = client.predict(variant="sft", rating="👍 good answer", critique=f"about {q}",
                                       correct_answer="", annotator=q, api_name="/feedback")[0]
        except Exception as e:  # asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=participant, args=(q,)) for q in QUESTIONS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(got) == len(QUESTIONS)
    after = room.laffi_scheduler.stats()
    assert after["largest"] > 1  # some participants' rows were answered in one call
    assert after["calls"] - before["calls"] < 2 * len(QUESTIONS)  # fewer calls than two stages each alone
    for q in QUESTIONS:
        assert got[q]["question"] == q
        for v, mine in got[q]["variants"].items():
            lone = alone[q]["variants"][v]
            assert (mine["answer"], mine["feedback"], mine["revised_answer"]) == (
                lone["answer"], lone["feedback"], lone["revised_answer"]), (q, v)
    from laffi.feedback.store import FeedbackStore

    rows = FeedbackStore(room.laffi_settings.data_dir / "feedback.sqlite").rows()
    assert sorted((r["annotator"], r["question"]) for r in rows) == sorted((q, q) for q in QUESTIONS)
    assert all(r["answer"] == got[r["question"]]["variants"]["sft"]["answer"] for r in rows)


def test_a_participant_who_leaves_while_waiting_frees_the_place(tiny_dir, tiny_adapters, tmp_path, monkeypatch):
    from gradio_client import Client

    from .conftest import slow_answers

    slow_answers(monkeypatch, 1.5)
    demo = launch_app(tmp_path, tiny_dir, tiny_adapters, queue_size=2, max_new_tokens=4)
    try:
        scheduler = demo.laffi_scheduler
        busy = threading.Thread(target=lambda: Client(demo.local_url, verbose=False).predict(
            passage=PASSAGE, question="first", api_name="/ask"))
        busy.start()
        deadline = time.time() + 30
        while not scheduler.stats()["running"] and time.time() < deadline:
            time.sleep(0.02)  # until its call runs
        leaving = Client(demo.local_url, verbose=False).submit(passage=PASSAGE, question="leaving", api_name="/ask")
        while scheduler.stats()["waiting"] < 1 and time.time() < deadline:
            time.sleep(0.05)
        assert scheduler.stats()["waiting"] == 1
        leaving.cancel()  # the participant closed the page
        while scheduler.stats()["waiting"] and time.time() < deadline:
            time.sleep(0.05)
        assert scheduler.stats()["waiting"] == 0
        busy.join(timeout=60)
        out = Client(demo.local_url, verbose=False).predict(passage=PASSAGE, question="next", api_name="/ask")
        assert final(out)["question"] == "next"  # the place was free again
    finally:
        demo.close()


def test_past_the_queue_size_a_question_gets_a_sentence_not_an_error(tiny_dir, tiny_adapters, tmp_path, monkeypatch):
    from gradio_client import Client

    from .conftest import slow_answers

    slow_answers(monkeypatch, 1.5)
    demo = launch_app(tmp_path, tiny_dir, tiny_adapters, queue_size=2, max_new_tokens=4)
    outcomes = []

    def user(i):
        try:
            out = Client(demo.local_url, verbose=False).predict(passage=PASSAGE, question=f"q{i}", api_name="/ask")
            outcomes.append("answered" if "Answered" in out[-3] else out[-3])  # ..., status, JSON, radio
        except Exception as e:  # an error badge: what must not happen
            outcomes.append(f"error: {e!r}")

    threads = [threading.Thread(target=user, args=(i,)) for i in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        demo.close()
    assert len(outcomes) == 6 and not [o for o in outcomes if o.startswith("error")], outcomes
    assert "answered" in outcomes
    refused = [o for o in outcomes if o != "answered"]
    assert refused and all("The room is busy" in o and "LAFFI_QUEUE_SIZE=2" in o for o in refused), outcomes

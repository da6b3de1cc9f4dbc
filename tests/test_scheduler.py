"""The scheduler that owns the app's model (laffi.serving.scheduler): requests waiting together share one call,
each gets its own rows and events, leaving and overload are handled, exclusive turns keep everyone else out; and
on the tiny model, merged answers equal the one-request path token for token."""

import threading
import time
from dataclasses import dataclass

import pytest

from laffi.errors import LaffiError
from laffi.inference.events import GenerationEvent
from laffi.inference.generation import GenerationConfig
from laffi.serving.scheduler import QueueFull, Scheduler, Waiting

PASSAGE = "The Halvard lighthouse was lit in 1874 and converted to electricity in 1952."


@dataclass
class StubCalls:
    """ModelCalls' shape without a model: an answer is 'variant:question'; every call is recorded."""

    streams: bool = True
    seconds: float = 0.0

    def __post_init__(self):
        self.calls = []

    def answer(self, pairs, variants, cfg, on_event=None):
        self.calls.append(("answer", [q for _, q in pairs], cfg.batch_size))
        time.sleep(self.seconds)
        if "missing" in variants:
            raise LaffiError("The variant 'missing' is not loaded.")
        for i, (_, q) in enumerate(pairs):
            for v in variants:
                if on_event:
                    on_event(GenerationEvent("answer", v, i, f"{v}:{q}"[:3]))
                    on_event(GenerationEvent("answer", v, i, f"{v}:{q}", done=True, total=len(pairs) * len(variants)))
        return {v: [f"{v}:{q}" for _, q in pairs] for v in variants}

    def answer_all(self, pairs, variants, cfg, paths=None, direct=None, on_event=None):
        self.calls.append(("answer_all", [q for _, q in pairs], cfg.batch_size))
        return {v: [f"{direct[v][i]} judged" for i in range(len(pairs))] for v in variants}


class StubModel:
    generator = None


def drain(gen):
    """Run a scheduler stream to its end: (what it yielded, what it returned)."""
    shown = []
    try:
        while True:
            shown.append(next(gen))
    except StopIteration as stop:
        return shown, stop.value


def ask_in_threads(scheduler, questions, variants=("base", "sft"), **kwargs):
    """One thread per question, each streaming its own answer call; returns {question: (events, value)}."""
    out, threads = {}, []

    def one(q):
        shown, value = drain(scheduler.stream("answer", ([(PASSAGE, q)], list(variants), GenerationConfig()),
                                              show=lambda events: list(events), **kwargs))
        out[q] = ([e for batch in shown if isinstance(batch, list) for e in batch], value)

    for q in questions:
        threads.append(threading.Thread(target=one, args=(q,)))
        threads[-1].start()
    return out, threads


def test_requests_waiting_together_share_one_call_and_each_gets_only_its_own_rows():
    calls = StubCalls()
    scheduler = Scheduler(calls, StubModel(), max_rows=32)
    questions = [f"question {i}?" for i in range(8)]
    with scheduler.exclusive():  # everyone arrives while the model is busy: they wait together
        out, threads = ask_in_threads(scheduler, questions)
        deadline = time.time() + 10
        while scheduler.stats()["waiting"] < 8 and time.time() < deadline:
            time.sleep(0.01)
    for t in threads:
        t.join(timeout=10)
    assert [c[0] for c in calls.calls] == ["answer"]  # one call for all eight
    assert sorted(calls.calls[0][1]) == sorted(questions) and calls.calls[0][2] == 32  # merged: the row budget
    for q in questions:
        events, value = out[q]
        assert value == {"base": [f"base:{q}"], "sft": [f"sft:{q}"]}
        assert events and all(e.index == 0 for e in events)  # its own pair, by its own index
        assert {e.text for e in events if e.done} == {f"base:{q}", f"sft:{q}"}  # nobody else's text
        assert all(e.total == 2 for e in events if e.done)  # its own share of the work
    assert scheduler.stats()["largest"] == 8 and scheduler.stats()["requests"] == 8


def test_a_lone_request_keeps_its_own_settings_and_a_crowd_is_cut_by_the_row_budget():
    calls = StubCalls()
    scheduler = Scheduler(calls, StubModel(), max_rows=4)
    _, value = drain(scheduler.stream("answer", ([(PASSAGE, "alone?")], ["base"], GenerationConfig())))
    assert value == {"base": ["base:alone?"]} and calls.calls == [("answer", ["alone?"], None)]
    with scheduler.exclusive():
        _, threads = ask_in_threads(scheduler, [f"q{i}" for i in range(5)])  # 2 rows each: 2 per call of 4 rows
        while scheduler.stats()["waiting"] < 5:
            time.sleep(0.01)
    for t in threads:
        t.join(timeout=10)
    assert [len(c[1]) for c in calls.calls[1:]] == [2, 2, 1]


def test_different_kinds_or_settings_never_share_a_call_and_turns_keep_arrival_order():
    calls = StubCalls()
    scheduler = Scheduler(calls, StubModel())
    results = {}

    def run(name, kind, args):
        results[name] = drain(scheduler.stream(kind, args))[1]

    cfg = GenerationConfig()
    jobs = [("a", "answer", ([(PASSAGE, "a")], ["base"], cfg)),
            ("b", "answer_all", ([(PASSAGE, "b")], ["base"], cfg, {}, {"base": ["x"]})),
            ("c", "answer", ([(PASSAGE, "c")], ["base"], GenerationConfig(max_new_tokens=5))),
            ("d", "answer", ([(PASSAGE, "d")], ["base"], cfg))]
    with scheduler.exclusive():
        threads = []
        for job in jobs:
            threads.append(threading.Thread(target=run, args=job))
            threads[-1].start()
            while scheduler.stats()["waiting"] < len(threads):
                time.sleep(0.01)
    for t in threads:
        t.join(timeout=10)
    assert [(k, qs) for k, qs, _ in calls.calls] == [("answer", ["a", "d"]), ("answer_all", ["b"]),
                                                     ("answer", ["c"])]
    assert results["b"] == {"base": ["x judged"]} and results["d"] == {"base": ["base:d"]}


def test_an_exclusive_turn_waits_for_the_running_call_and_keeps_every_request_out():
    calls = StubCalls(seconds=0.3)
    scheduler = Scheduler(calls, StubModel())
    _, threads = ask_in_threads(scheduler, ["first"])
    while not calls.calls:  # its call has begun
        time.sleep(0.01)
    with scheduler.exclusive():
        assert scheduler.stats()["calls"] == 1  # granted only once the running call had ended
        later, more = ask_in_threads(scheduler, ["later"])
        time.sleep(0.5)
        assert "later" not in later and len(calls.calls) == 1  # nothing runs inside someone's turn
        with scheduler.exclusive():  # the same thread again: re-entrant, not a deadlock
            pass
    for t in threads + more:
        t.join(timeout=10)
    assert later["later"][1] == {"base": ["base:later"], "sft": ["sft:later"]}


def test_a_request_that_leaves_while_waiting_is_dropped_and_never_computed():
    calls = StubCalls()
    scheduler = Scheduler(calls, StubModel())
    told = []
    with scheduler.exclusive():
        gen = scheduler.stream("answer", ([(PASSAGE, "gone?")], ["base"], GenerationConfig()),
                               waiting=lambda where: told.append(where) or where)
        first = next(gen)  # it says where it stands at once
        assert isinstance(first, Waiting) and first.ahead == 0 and "yours is next" in first.sentence()
        assert scheduler.stats()["waiting"] == 1
        gen.close()  # the page was closed
        assert scheduler.stats()["waiting"] == 0
    _, value = drain(scheduler.stream("answer", ([(PASSAGE, "here?")], ["base"], GenerationConfig())))
    assert value == {"base": ["base:here?"]} and [c[1] for c in calls.calls] == [["here?"]]


def test_past_the_queue_size_a_new_question_is_refused_with_a_sentence_but_a_later_stage_is_not():
    scheduler = Scheduler(StubCalls(), StubModel(), max_waiting=2)
    cfg = GenerationConfig()
    with scheduler.exclusive():
        waiting = [scheduler.stream("answer", ([(PASSAGE, f"q{i}")], ["base"], cfg), waiting=lambda w: w)
                   for i in range(2)]
        for gen in waiting:
            next(gen)
        with pytest.raises(QueueFull, match=r"The room is busy: 2 questions .*LAFFI_QUEUE_SIZE=2.*Ask again"):
            next(scheduler.stream("answer", ([(PASSAGE, "one too many")], ["base"], cfg), waiting=lambda w: w))
        later = scheduler.stream("answer_all", ([(PASSAGE, "q0")], ["base"], cfg, {}, {"base": ["x"]}),
                                 waiting=lambda w: w, admit=False)
        assert next(later).ahead == 2  # admitted: a stage of an Ask already in the room
    for gen in (*waiting, later):
        drain(gen)


def test_the_wait_is_estimated_from_measured_calls():
    calls = StubCalls(seconds=0.2)
    scheduler = Scheduler(calls, StubModel())
    drain(scheduler.stream("answer", ([(PASSAGE, "measure")], ["base"], GenerationConfig())))
    assert 0.15 < scheduler.stats()["seconds"]["answer"] < 2
    with scheduler.exclusive():
        other = scheduler.stream("answer", ([(PASSAGE, "x")], ["sft"], GenerationConfig()), waiting=lambda w: w)
        mine = scheduler.stream("answer", ([(PASSAGE, "y")], ["base"], GenerationConfig()), waiting=lambda w: w)
        assert next(other).ahead == 0
        where = next(mine)  # one request of another kind of call ahead: one measured call before mine
        assert where.ahead == 1 and 0.15 < where.seconds < 2
        assert "1 question is ahead of yours; yours starts in about 1 s" in where.sentence()
    drain(other), drain(mine)
    assert Waiting(3, None).sentence().startswith("⏳ 3 questions are ahead of yours.")


def test_a_failed_call_tells_each_of_its_requests_and_the_scheduler_goes_on():
    scheduler = Scheduler(StubCalls(), StubModel())
    with pytest.raises(LaffiError, match="'missing' is not loaded"):
        drain(scheduler.stream("answer", ([(PASSAGE, "q")], ["missing"], GenerationConfig())))
    assert drain(scheduler.stream("answer", ([(PASSAGE, "q")], ["base"], GenerationConfig())))[1] == {
        "base": ["base:q"]}


def test_where_a_server_batches_requests_pass_straight_through_at_the_same_time():
    both = threading.Barrier(2, timeout=10)  # each call waits for the other: only concurrent calls finish

    class Concurrent(StubCalls):
        def answer(self, pairs, variants, cfg, on_event=None):
            both.wait()
            return super().answer(pairs, variants, cfg, on_event)

    class Served:
        generator = object()  # a vLLM server generates (laffi.inference.backends)

    calls = Concurrent()
    scheduler = Scheduler(calls, Served())
    out, threads = ask_in_threads(scheduler, ["one", "two"])
    for t in threads:
        t.join(timeout=15)
    assert out["one"][1]["base"] == ["base:one"] and out["two"][1]["sft"] == ["sft:two"]
    assert len(calls.calls) == 2 and scheduler.stats()["calls"] == 0  # each its own call, none queued


def test_merged_answers_equal_the_one_request_path_token_for_token(tiny_lm):
    from laffi.inference.generation import answer_questions
    from laffi.inference.selffeedback import answer_all, answer_paths
    from laffi.serving.model_calls import ModelCalls

    variants = tiny_lm.variants
    cfg = GenerationConfig(max_new_tokens=6)
    questions = ["When was it lit?", "When was it converted?", "Who lit it?", "What is it?"]
    paths = answer_paths(tiny_lm, variants)
    alone = {q: answer_questions(tiny_lm, [(PASSAGE, q)], variants, cfg) for q in questions}
    judged = {q: answer_all(tiny_lm, [(PASSAGE, q)], variants, cfg, feedback=True, paths=paths, direct=alone[q])
              for q in questions}
    scheduler = Scheduler(ModelCalls.wrap(tiny_lm), tiny_lm)
    got, threads = {}, []

    def participant(q):
        _, direct = drain(scheduler.stream("answer", ([(PASSAGE, q)], variants, cfg)))
        _, results = drain(scheduler.stream("answer_all", ([(PASSAGE, q)], variants, cfg, paths, direct),
                                            admit=False))
        got[q] = (direct, results)

    with scheduler.exclusive():
        for q in questions:
            threads.append(threading.Thread(target=participant, args=(q,)))
            threads[-1].start()
        while scheduler.stats()["waiting"] < len(questions):
            time.sleep(0.01)
    for t in threads:
        t.join(timeout=120)
    assert scheduler.stats()["largest"] == len(questions)  # they were answered together
    for q in questions:
        direct, results = got[q]
        for v in variants:
            assert direct[v][0].raw == alone[q][v][0].raw and direct[v][0].text == alone[q][v][0].text
            assert direct[v][0].na_prob == pytest.approx(alone[q][v][0].na_prob, abs=1e-4)
            mine, lone = results[v][0], judged[q][v][0]
            assert mine.answer == lone.answer and mine.feedback.text == lone.feedback.text

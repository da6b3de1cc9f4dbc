"""Generation reports one event type (laffi.inference.events.GenerationEvent): every row names its stage, variant
and question from the start, streams its text, and finishes with exactly one done event carrying its reply; the
vLLM backend reports the same shape; `streamed` bridges the callbacks to a generator."""

import pytest

from laffi.inference.events import GenerationEvent, Row, count_done, streamed
from laffi.inference.generation import GenerationConfig, answer_questions, generate_batched, generate_grid
from laffi.inference.prompts import first_line, qa_prompt

from .vllm_stub import VllmStub

PAIRS = [("The river is long and the bridge is old.", "What is old?"),
         ("A city was founded in 1702 near the bridge by fishermen from the coast.", "When was it founded?"),
         ("Short.", "Why?")]


def _done(events):
    return [e for e in events if e.done]


def test_a_mixed_batch_labels_every_row_and_finishes_each_once(tiny_lm):
    prompts = [qa_prompt(tiny_lm.tokenizer, c, q) for c, q in PAIRS]
    events = []
    # batch_size 4: nine rows in three batches, the variants of one prompt split over batches
    out = generate_grid(tiny_lm, prompts, tiny_lm.variants, GenerationConfig(max_new_tokens=6, batch_size=4),
                        on_event=events.append, stage="feedback")
    rows = {(v, i) for v in tiny_lm.variants for i in range(len(prompts))}
    done = _done(events)
    assert sorted((e.variant, e.index) for e in done) == sorted(rows)  # exactly one done event per row
    assert all(e.text == out[e.variant][e.index] for e in done)  # ... carrying the reply returned
    streaming = [e for e in events if not e.done]
    assert {(e.variant, e.index) for e in streaming} == rows  # every row streamed before it finished
    assert {e.stage for e in events} == {"feedback"} and {e.total for e in events} == {len(rows)}
    assert out == generate_grid(tiny_lm, prompts, tiny_lm.variants, GenerationConfig(max_new_tokens=6, batch_size=4))


def test_rows_keep_their_own_labels_in_any_order(tiny_lm):
    prompts = [qa_prompt(tiny_lm.tokenizer, c, q) for c, q in PAIRS]
    rows = [Row(prompts[2], "sft", 7, "verdict"), Row(prompts[0], "base", 3, "answer"),
            Row(prompts[1], "laffi", 5, "feedback")]
    events = []
    texts = generate_batched(tiny_lm, rows, GenerationConfig(max_new_tokens=4), on_event=events.append)
    # done in the order batches finish (laffi.inference.generation.schedule), each with its own row's label
    assert sorted((e.stage, e.variant, e.index, e.text) for e in _done(events)) == sorted(
        (r.stage, r.variant, r.index, t) for r, t in zip(rows, texts))
    assert {(e.stage, e.variant, e.index) for e in events} == {(r.stage, r.variant, r.index) for r in rows}


def test_answer_all_reports_every_stage_with_the_whole_calls_total(tiny_lm):
    from laffi.inference.selffeedback import AnswerPath, answer_all

    events = []
    out = answer_all(tiny_lm, PAIRS[:2], ["sft", "laffi"], GenerationConfig(max_new_tokens=4), feedback=True,
                     paths={"laffi": AnswerPath("verify", "base")}, on_event=events.append)
    done = _done(events)
    assert {e.stage for e in done} == {"answer", "verdict", "feedback"}
    assert len({e.total for e in events}) == 1 and len(done) <= events[0].total
    answers = {(e.variant, e.index) for e in done if e.stage == "answer"}
    assert answers == {(v, i) for v in ("sft", "laffi", "base") for i in range(2)}  # base drafts for laffi
    for e in done:
        if e.stage == "feedback":
            assert first_line(e.text) == out[e.variant][e.index].feedback.text
    progress = []
    answer_all(tiny_lm, PAIRS[:2], ["sft"], GenerationConfig(max_new_tokens=4),
               on_event=count_done(lambda done, total: progress.append((done, total))))
    assert progress == [(1, 2), (2, 2)]


def test_the_vllm_backend_reports_the_same_events(tiny_lm):
    events = []
    with VllmStub(base="the-base", adapters=["sft", "laffi"], reply=lambda model, prompt: f"{model}-1874\nx") as stub:
        from laffi.inference.vllm import VllmBackend

        tiny_lm.use_generator(VllmBackend(stub.url, eos_token=tiny_lm.tokenizer.eos_token))
        try:
            out = answer_questions(tiny_lm, PAIRS[:2], ["base", "sft"], GenerationConfig(max_new_tokens=5),
                                   on_event=events.append)
        finally:
            tiny_lm.use_generator(None)
    assert tiny_lm.generator is None
    assert all(e.done and e.stage == "answer" and e.total == 4 for e in events)
    assert sorted((e.variant, e.index) for e in events) == [("base", 0), ("base", 1), ("sft", 0), ("sft", 1)]
    assert all(e.text.strip() == out[e.variant][e.index].raw for e in events)
    assert out["sft"][0].text == "sft-1874" and out["sft"][0].na_prob is None  # nothing measured remotely


def test_streamed_yields_the_events_then_returns_the_value():
    def work(on_event):
        for k in range(3):
            on_event(GenerationEvent("answer", "base", k, "x" * k))
        return "value"

    gen, seen = streamed(work), []
    while True:
        try:
            seen += next(gen)
        except StopIteration as stop:
            assert stop.value == "value"
            break
    assert [e.index for e in seen] == [0, 1, 2]

    def broken(on_event):
        raise ValueError("no model")

    with pytest.raises(ValueError, match="no model"):
        list(streamed(broken))

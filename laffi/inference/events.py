"""What generation reports as it goes: one event type for every stage, row and caller.

Usage:
    answer_questions(lm, pairs, variants, cfg, on_event=print)    # GenerationEvent(stage, variant, index, text, ...)
    evaluate_variants(lm, examples, variants, on_event=count_done(lambda done, total: bar.update(...)))
    result = yield from streamed(lambda on_event: answer_all(lm, pairs, variants, on_event=on_event), 0.2, show)
    yield from relay(events_queue, 0.2, show)     # a queue of events (ending with END) as a generator

Every generated row carries its label from the start (a Row: prompt, variant, the caller's question index, stage),
so an event names the row it is about and no layer re-maps row numbers or wraps callbacks to do it. A row reports
its text so far after every decoding step (done=False, where the backend streams) and once when it is finished
(done=True, its final text): progress is the count of done events, out of `total`. `relay` is the one bridge
from a queue of those events to a generator: `streamed` (one call in a worker thread) and the app's scheduler
(laffi.serving.scheduler: many requests in one batch, each with its own queue) stream cards into Gradio through it.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Generator, TypeVar

T = TypeVar("T")

STAGES = ("answer", "feedback", "verdict", "rank", "annotate")  # what rows are for: laffi.inference.selffeedback
# (answer, feedback, verdict = verify's one-token "Correct?" rows, rank = likelihood rows), annotate = the LLM
# annotator's feedback (laffi.feedback.annotation)


@dataclass(frozen=True)
class Row:
    """One row to generate: its prompt and variant, and what it is for (the caller's question index, its stage)."""

    prompt: str
    variant: str
    index: int = 0
    stage: str = "answer"


@dataclass(frozen=True)
class GenerationEvent:
    """One row's progress: its text so far (done=False) or its final text (done=True, once per row)."""

    stage: str
    variant: str
    index: int  # the question (pair, prompt) index in the caller's call, not a row number
    text: str
    done: bool = False
    total: int = 0  # rows the whole call generates (at most: a chooser's candidates may be fewer)

    @classmethod
    def of(cls, row: Row, text: str, done: bool = False, total: int = 0) -> "GenerationEvent":
        return cls(row.stage, row.variant, row.index, text, done, total)


OnEvent = Callable[[GenerationEvent], None]


def as_rows(rows) -> list[Row]:
    """Rows as given, or (prompt, variant) pairs as rows whose index is their position."""
    return [r if isinstance(r, Row) else Row(r[0], r[1], k) for k, r in enumerate(rows)]


def with_total(on_event: OnEvent | None, total: int) -> OnEvent | None:
    """on_event for one part of a call in stages: every event reports the whole call's total."""
    if on_event is None:
        return None

    def forward(event: GenerationEvent) -> None:
        on_event(replace(event, total=total))

    return forward


def count_done(report: Callable[[int, int], None], total: int | None = None) -> OnEvent:
    """An on_event that calls report(rows done, total) at every done event (total: the events' own, or this one
    for a caller that splits its work into several calls)."""
    done = 0

    def on_event(event: GenerationEvent) -> None:
        nonlocal done
        if event.done:
            done += 1
            report(done, event.total if total is None else total)

    return on_event


END = object()  # what a queue of events ends with (relay)


def relay(events: queue.Queue, interval: float = 0.0, show: Callable[[list[GenerationEvent]], object] = list,
          idle: Callable[[], object] | None = None, idle_seconds: float = 1.0) -> Generator[object, None, None]:
    """Generator: reads GenerationEvents from `events` until END and yields show(events since the last yield) at
    most every `interval` seconds (the first at once, as the first token is what a reader waits for; interval 0:
    one yield per event; show returning None yields nothing). While nothing arrives, idle() is yielded every
    idle_seconds where given (a request still waiting for the model says so; None yields nothing)."""
    pending, last = [], None
    while True:
        if pending and last is not None:
            wait = max(0.0, last + interval - time.perf_counter())
        else:
            wait = idle_seconds if idle is not None else None
        try:
            item = events.get(timeout=wait)
        except queue.Empty:  # the interval passed with text not shown yet, or nothing came for a while
            item = None
            if not pending and idle is not None:
                shown = idle()
                if shown is not None:
                    yield shown
                continue
        if item is END:
            return
        if item is not None:
            pending.append(item)
        if item is None or last is None or interval <= 0 or time.perf_counter() - last >= interval:
            last = time.perf_counter()
            shown, pending = show(pending), []
            if shown is not None:
                yield shown


def streamed(work: Callable[[OnEvent], T], interval: float = 0.0,
             show: Callable[[list[GenerationEvent]], object] = list) -> Generator[object, None, T]:
    """Generator: runs work(on_event) in a worker thread (the model call) and relays its events (relay: show(events
    since the last yield) at most every `interval` seconds). Returns work's value (`value = yield from
    streamed(...)`); raises its exception. laffi.serving.scheduler uses it where requests are not batched in this
    process (a vLLM server, ZeroGPU)."""
    events: queue.Queue = queue.Queue()
    box = {}

    def run():
        try:
            box["value"] = work(events.put)
        except BaseException as e:  # re-raised in the caller's thread (where Gradio shows it)
            box["error"] = e
        finally:
            events.put(END)

    worker = threading.Thread(target=run, name="laffi-stream", daemon=True)
    worker.start()
    try:
        yield from relay(events, interval, show)
    finally:  # a stream closed early (the page left) waits for its worker: the call owns the model until it ends
        worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]

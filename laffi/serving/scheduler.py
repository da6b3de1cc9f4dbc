"""One owner of the app's model: every participant's Ask joins the next mixed-adapter call, and the rest of the
model work (Attention, Evaluate, attaching adapters) takes the model between calls.

Usage:
    scheduler = Scheduler(calls, lm, max_waiting=64, max_rows=64)     # calls: laffi.serving.model_calls.ModelCalls
    direct = yield from scheduler.stream("answer", (pairs, variants, cfg), interval, show, waiting=tell)
    results = yield from scheduler.stream("answer_all", (pairs, variants, cfg, paths, direct), interval, show,
                                          admit=False)   # a later stage of an Ask that was admitted already
    value = scheduler.run_exclusive(fn, *args)   # fn on the model thread, in a turn of its own (Attention, ...)
    with scheduler.exclusive():   # no one's rows run until the block ends (code that needs the model held still)
        ...
    scheduler.stats()             # calls run, requests served, the largest call, measured seconds per call

Why (measured: eight participants asking at once waited 8.1x as long as one): Gradio runs an event's requests
one after another (concurrency_limit=1), or in threads that would share the model, and neither batches. Here
every request waits on one queue; the scheduler's thread takes the oldest and every other waiting request of the
same kind and settings, and answers all their (passage, question) pairs in ONE call: its mixed-adapter batch spans
participants, and questions on one passage read it once per adapter (laffi.inference.prefix). Events come back
with the call's pair index, which leads each to its own participant's queue: nobody sees another's rows.
A request joins at the next call, not at the next decoding step (a call's batch decodes to its end, its finished
rows leaving it: laffi.inference.decoding); `max_rows` bounds a call (64: measured, twenty participants in one call
of 60 rows were answered in 18.8 s, in calls of 32 rows in 24.0 s, once finished rows left). A request that leaves
while it waits is dropped; one that leaves while its call runs gets no more events, and its later stages are never
asked for. A lone request runs exactly the call it would run alone: the same rows, the same batch.

Every call, and every exclusive job, runs on the process's one model thread (laffi.inference.model_thread):
torch's OpenMP workers slow every small op down by several times once more than one thread runs them.

Where batching across requests is not this process's to do, a request passes straight through in a worker thread
of its own: a vLLM server batches everyone's rows itself (continuous batching), and on ZeroGPU every call is a GPU
task of its own request.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field, replace

from laffi.errors import LaffiError
from laffi.inference.events import END, GenerationEvent, relay, streamed
from laffi.inference.model_thread import here as on_the_model_thread
from laffi.inference.model_thread import on_model_thread

KINDS = ("answer", "answer_all")  # ModelCalls.answer (direct answers) and .answer_all (choosing, self-feedback)
GATHER_SECONDS = 0.05  # after an idle spell, how long the first request waits for those arriving with it
MEASURED_CALLS = 5  # the estimate of a kind's call is the mean of its last few


class QueueFull(LaffiError):
    """More requests are in flight than the app accepts (LAFFI_QUEUE_SIZE)."""


@dataclass(frozen=True)
class Waiting:
    """Where a waiting request stands: requests ahead of it, and the measured estimate until its call starts."""

    ahead: int
    seconds: float | None  # None: nothing measured yet for the calls ahead

    def sentence(self) -> str:
        if self.ahead == 0:
            return "⏳ Waiting for the model (another tab is using it)… yours is next."
        plural = "question is" if self.ahead == 1 else "questions are"
        eta = f"; yours starts in about {max(1, round(self.seconds))} s" if self.seconds is not None else ""
        return f"⏳ {self.ahead} {plural} ahead of yours{eta}. The model answers waiting questions together."


@dataclass(eq=False)
class _Ticket:
    """One request's call: its arguments, its own queue of events, and how far it got."""

    kind: str
    args: tuple  # (pairs, variants, cfg) or (pairs, variants, cfg, paths, direct)
    key: str  # requests with equal keys can share one call
    events: queue.Queue = field(default_factory=queue.Queue)
    state: str = "waiting"  # waiting -> running -> done; "left" once its reader went away
    value: object = None
    error: BaseException | None = None
    joined: object = None  # called when its call starts (or None)

    def rows(self) -> int:
        return len(self.args[0]) * len(self.args[1])


@dataclass(eq=False)
class _Lease:
    """A turn with the model for someone else's code (exclusive): granted between calls, returned at the end."""

    granted: threading.Event = field(default_factory=threading.Event)
    returned: threading.Event = field(default_factory=threading.Event)


def call_key(kind: str, args: tuple) -> str:
    """What two requests must share to be answered in one call: the kind, the variants and the settings (and for
    answer_all the answer paths and which variants' direct answers come with them); the pairs may differ."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of call {kind!r}")
    _, variants, cfg, *rest = args
    if kind == "answer":
        return repr((kind, tuple(variants), cfg))
    paths, direct = rest
    return repr((kind, tuple(variants), cfg, sorted((paths or {}).items()), sorted(direct or {})))


def merged_args(kind: str, tickets: list[_Ticket], max_rows: int) -> tuple:
    """One call's arguments for requests of one key: their pairs in order (and their direct answers, likewise);
    a merged call batches up to max_rows rows at once, a lone request keeps its own settings."""
    pairs, variants, cfg, *rest = tickets[0].args
    pairs = [p for t in tickets for p in t.args[0]]
    if len(tickets) > 1:
        cfg = replace(cfg, batch_size=max(cfg.batch_size or 0, max_rows))
    if kind == "answer":
        return pairs, variants, cfg
    paths, direct = rest
    if direct is not None:
        direct = {v: [a for t in tickets for a in t.args[4][v]] for v in direct}
    return pairs, variants, cfg, paths, direct


def split_value(value: dict, tickets: list[_Ticket]) -> list[dict]:
    """A merged call's {variant: [one per pair]} cut back into each request's own."""
    out, start = [], 0
    for t in tickets:
        n = len(t.args[0])
        out.append({v: rows[start:start + n] for v, rows in value.items()})
        start += n
    return out


class Scheduler:
    def __init__(self, calls, lm, max_waiting: int = 64, max_rows: int = 64, gather_seconds: float = GATHER_SECONDS):
        self.calls, self.lm = calls, lm
        self.max_waiting, self.max_rows, self.gather_seconds = max_waiting, max_rows, gather_seconds
        self._changed = threading.Condition()
        self._queue: list = []  # tickets and leases, oldest first
        self._running: list[_Ticket] = []
        self._turn: tuple[str, float] | None = None  # (kind or "exclusive", when it began) while the model is busy
        self._seconds: dict[str, list[float]] = {}  # kind -> seconds of its last calls
        self._thread: threading.Thread | None = None
        self._holder = threading.local()
        self._counts = {"calls": 0, "requests": 0, "largest": 0}
        self._jobs_running = 0  # exclusive jobs running on the model thread (run_exclusive), nested ones counted

    def batches_here(self) -> bool:
        """Whether requests are batched in this process: not where a server generates, nor on ZeroGPU."""
        return self.calls.streams and self.lm.generator is None

    def stream(self, kind: str, args: tuple, interval: float = 0.0, show=list, waiting=None, admit: bool = True,
               joined=None):
        """Generator: the request's call, yielding show(its events) at most every `interval` seconds (relay) and,
        while it waits, waiting(Waiting) once at once and then every second; returns its value, raises its error.
        admit=False: a later stage of a request admitted already (never refused as one too many). joined(): called
        (in the scheduler's thread) when its call starts."""
        call = getattr(self.calls, kind)
        if not self.batches_here():
            if not self.calls.streams:  # ZeroGPU: the whole result of the GPU task
                return call(*args)
            return (yield from streamed(lambda on_event: call(*args, on_event=on_event), interval, show))
        ticket = self._submit(kind, args, admit, joined)
        finished = False
        try:
            def idle():  # what a waiting request is told (nothing while it runs, or gathers with the idle model)
                where = self.where(ticket) if waiting is not None else None
                return waiting(where) if where is not None else None

            told = idle()
            if told is not None:
                yield told
            yield from relay(ticket.events, interval, show, idle=idle)
            finished = True
        finally:
            if not finished:  # the reader went away (a page closed, a client gone): its rows are not wanted
                self._leave(ticket)
        if ticket.error is not None:
            raise ticket.error
        return ticket.value

    @contextlib.contextmanager
    def exclusive(self):
        """The model for the caller's block alone, between calls, in turn with everyone's requests (FIFO).
        Re-entrant in one thread (Evaluate attaches new adapters inside its own turn), and on the model thread
        while an exclusive job runs there (run_exclusive)."""
        if getattr(self._holder, "held", False) or (on_the_model_thread() and self._jobs_running):
            yield
            return
        if on_the_model_thread():  # the turn is granted by the scheduler's thread, which may be waiting for this one
            raise RuntimeError("Scheduler.exclusive() can't be taken on the model thread outside a job of this "
                               "scheduler: use run_exclusive(fn) from another thread.")
        lease = _Lease()
        with self._changed:
            self._queue.append(lease)
            self._start()
            self._changed.notify_all()
        lease.granted.wait()
        self._holder.held = True
        try:
            yield
        finally:
            self._holder.held = False
            lease.returned.set()

    def run_exclusive(self, fn, /, *args, **kwargs):
        """fn(*args, **kwargs) on the model thread in a turn of its own (between calls, in arrival order with
        everyone's requests); its value, or its exception raised here. The caller's context variables go with it
        (a Gradio progress bar called inside fn still moves)."""
        with self.exclusive():
            def job():
                self._jobs_running += 1  # a count: a job inside a job leaves the outer one's turn standing
                try:
                    return fn(*args, **kwargs)
                finally:
                    self._jobs_running -= 1

            return on_model_thread(job)

    def where(self, ticket: _Ticket) -> Waiting | None:
        """Requests ahead of a waiting one and, from the measured call times, when its call should start: what
        is left of the running call plus one call for each other kind of request ahead of it. None when it does
        not wait for anyone (it runs, or starts as soon as the idle model has gathered who asked with it)."""
        with self._changed:
            if ticket.state != "waiting" or ticket not in self._queue:
                return None
            index = self._queue.index(ticket)
            before = [x for x in self._queue[:index] if isinstance(x, _Ticket)]
            ahead = len(self._running) + len(before)
            if ahead == 0 and self._turn is None and index == 0:
                return None
            seconds, known = 0.0, True
            if self._turn is not None and self._turn[0] in KINDS:
                kind, began = self._turn
                est = self._estimate(kind)
                known &= est is not None
                seconds += max(0.0, (est or 0.0) - (time.perf_counter() - began))
            for kind in {(t.kind, t.key): t.kind for t in before if t.key != ticket.key}.values():
                est = self._estimate(kind)
                known &= est is not None
                seconds += est or 0.0
            return Waiting(ahead, seconds if known else None)

    def stats(self) -> dict:
        with self._changed:
            return {**self._counts, "waiting": sum(isinstance(x, _Ticket) for x in self._queue),
                    "running": len(self._running),
                    "seconds": {k: self._estimate(k) for k in self._seconds}}

    # -- the scheduler's side ---------------------------------------------------------------------------------

    def _estimate(self, kind: str) -> float | None:
        last = self._seconds.get(kind)
        return sum(last) / len(last) if last else None

    def _in_flight(self) -> int:
        return len(self._running) + sum(isinstance(x, _Ticket) for x in self._queue)

    def _submit(self, kind: str, args: tuple, admit: bool, joined=None) -> _Ticket:
        ticket = _Ticket(kind, args, call_key(kind, args), joined=joined)
        with self._changed:
            if admit and self._in_flight() >= self.max_waiting:
                raise QueueFull(f"The room is busy: {self._in_flight()} questions are being answered or waiting, "
                                f"as many as this app takes at once (LAFFI_QUEUE_SIZE={self.max_waiting}). Ask "
                                "again in a minute.")
            self._queue.append(ticket)
            self._start()
            self._changed.notify_all()
        return ticket

    def _leave(self, ticket: _Ticket) -> None:
        with self._changed:
            if ticket.state == "waiting" and ticket in self._queue:
                self._queue.remove(ticket)
            ticket.state = "left"

    def _start(self) -> None:
        if self._thread is None:  # under self._changed
            self._thread = threading.Thread(target=self._loop, name="laffi-scheduler", daemon=True)
            self._thread.start()

    def _next(self):
        """Blocks until there is work; then a lease, or the oldest request with every waiting one that can share
        its call (older than any lease, within max_rows)."""
        with self._changed:
            idle = not self._queue
            while not self._queue:
                self._changed.wait()
            if idle and self.gather_seconds > 0:  # others asking at the same moment join this first call
                deadline = time.perf_counter() + self.gather_seconds
                while (left := deadline - time.perf_counter()) > 0:
                    self._changed.wait(left)
            first = self._queue[0]
            if isinstance(first, _Lease):
                self._queue.pop(0)
                self._turn = ("exclusive", time.perf_counter())
                return first
            group, rows = [], 0
            for item in self._queue:
                if isinstance(item, _Lease):
                    break  # later requests wait for it: turns stay in arrival order
                if item.key == first.key and (not group or rows + item.rows() <= self.max_rows):
                    group.append(item)
                    rows += item.rows()
            for t in group:
                self._queue.remove(t)
                t.state = "running"
                if t.joined is not None:
                    t.joined()
            self._running, self._turn = group, (first.kind, time.perf_counter())
            return group

    def _loop(self) -> None:
        while True:
            work = self._next()
            began = time.perf_counter()
            if isinstance(work, _Lease):
                work.granted.set()
                work.returned.wait()
            else:
                self._run(work)
            with self._changed:
                if not isinstance(work, _Lease):
                    kind = work[0].kind
                    self._seconds[kind] = [*self._seconds.get(kind, []), time.perf_counter() - began][-MEASURED_CALLS:]
                    self._counts["calls"] += 1
                    self._counts["requests"] += len(work)
                    self._counts["largest"] = max(self._counts["largest"], len(work))
                self._running, self._turn = [], None

    def _run(self, group: list[_Ticket]) -> None:
        """One call for the group; each request gets its own events, its own part of the value, or the error."""
        kind = group[0].kind
        where = [(t, local) for t in group for local in range(len(t.args[0]))]
        share = {id(t): len(t.args[0]) / len(where) for t in group}

        def route(event: GenerationEvent) -> None:
            t, local = where[event.index]
            if t.state == "running":
                t.events.put(replace(event, index=local, total=round(event.total * share[id(t)])))

        try:
            value = on_model_thread(getattr(self.calls, kind), *merged_args(kind, group, self.max_rows),
                                    on_event=route)
            for t, part in zip(group, split_value(value, group)):
                t.value = part
        except BaseException as e:  # every request of a failed call is told why; the scheduler goes on
            for t in group:
                t.error = e
        finally:
            for t in group:
                if t.state == "running":
                    t.state = "done"
                t.events.put(END)

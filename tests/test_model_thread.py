"""One thread for a process's model work (laffi.inference.model_thread), and the scheduler's calls, exclusive jobs
and the app's model loading all running on it: more than one thread running torch's parallel ops made every small
op of a decoding step several times slower (the module's docstring has the numbers)."""

import contextvars
import threading

import pytest

from laffi.inference.model_thread import here, on_model_thread

from .test_scheduler import PASSAGE, StubCalls, StubModel, drain

pytestmark = pytest.mark.timeout(120)  # a deadlock fails here instead of holding the shared thread for ever


def test_calls_from_any_thread_run_on_one_thread_with_their_values_errors_and_context():
    seen, out = [], []
    callers = [threading.Thread(target=lambda: out.append(on_model_thread(lambda: seen.append(
        threading.current_thread()) or threading.get_ident()))) for _ in range(3)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(timeout=10)
    assert len(seen) == 3 and len(set(seen)) == 1 and seen[0] is not threading.current_thread()
    assert len(set(out)) == 1 and not here() and on_model_thread(here)
    with pytest.raises(ValueError, match="no such variant"):  # raised in the caller, the thread goes on
        on_model_thread(lambda: (_ for _ in ()).throw(ValueError("no such variant")))
    assert on_model_thread(lambda: on_model_thread(lambda: 7)) == 7  # a call inside a call runs inline
    asked = contextvars.ContextVar("asked")
    asked.set("the caller's")  # how Gradio's progress bar and request reach code run for an event
    assert on_model_thread(asked.get) == "the caller's"


class ThreadRecordingCalls(StubCalls):
    def answer(self, pairs, variants, cfg, on_event=None):
        self.threads = [*getattr(self, "threads", []), threading.current_thread()]
        return super().answer(pairs, variants, cfg, on_event)


def test_the_schedulers_calls_and_exclusive_jobs_run_on_the_model_thread():
    from laffi.inference.generation import GenerationConfig
    from laffi.serving.scheduler import Scheduler

    calls = ThreadRecordingCalls()
    scheduler = Scheduler(calls, StubModel())
    _, value = drain(scheduler.stream("answer", ([(PASSAGE, "When?")], ["base"], GenerationConfig())))
    assert value == {"base": ["base:When?"]}
    model = on_model_thread(threading.current_thread)
    assert calls.threads == [model]

    def job(x):
        with scheduler.exclusive():  # nested inside the job, on the model thread: re-entrant, not a deadlock
            return threading.current_thread(), x * 2

    assert scheduler.run_exclusive(job, 21) == (model, 42)

    def outer():
        inner = scheduler.run_exclusive(lambda: "inner")  # a job inside a job: inline, in the same turn
        with scheduler.exclusive():  # and the outer job's turn still stands after it
            return inner

    assert scheduler.run_exclusive(outer) == "inner"

    def turn_outside_a_job():
        with scheduler.exclusive():
            pass

    with pytest.raises(RuntimeError, match="run_exclusive"):  # would wait for the thread it runs on
        on_model_thread(turn_outside_a_job)
    with pytest.raises(KeyError):
        scheduler.run_exclusive(lambda: {}["missing"])
    _, again = drain(scheduler.stream("answer", ([(PASSAGE, "Who?")], ["base"], GenerationConfig())))
    assert again == {"base": ["base:Who?"]} and calls.threads == [model, model]  # the turn was given back


def test_the_app_loads_and_warms_its_model_on_the_model_thread():
    from laffi.settings import Settings
    from laffi.ui.loading import LazyModel

    where = {}

    class Loaded:
        config = None

    def load():
        where["load"] = threading.current_thread()
        return Loaded()

    lazy = LazyModel(Settings(), load=load, warm=False)
    waited = LazyModel(Settings(), load=lambda: Loaded(), warm=False)

    def wait_on_the_model_thread():  # as a job queued before the load would: a sentence, never a hang
        waited.start()
        try:
            waited.wait()
        except Exception as e:  # gr.Error
            return str(e)

    assert "still loading" in on_model_thread(wait_on_the_model_thread)
    assert isinstance(waited.wait(timeout=10), Loaded)
    lazy.on_ready = lambda lm: where.setdefault("ready", threading.current_thread())
    lazy.start().wait(timeout=10)
    model = on_model_thread(threading.current_thread)
    assert where == {"load": model, "ready": model}

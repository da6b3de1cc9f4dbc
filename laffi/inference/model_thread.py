"""One thread for all of a process's model work: every CPU torch call of the app (and of the bench) runs on it.

Usage:
    value = on_model_thread(fn, *args, **kwargs)   # fn there (inline when already there); its value, or its error
    here()                                         # whether the calling thread is that thread

Why (measured on this project's 2-core machine): torch's CPU ops run their parallel parts through OpenMP, and
libgomp gives every thread that runs one a team of worker threads of its own. Once there are more such threads
than CPUs it stops letting idle workers spin between parallel regions, so every small op of a decoding step waits
for sleeping workers to wake: a LoRA product of one decoding row took 19 us on a lone thread and 122-163 us on a
second one, a bfloat16 linear layer 68 and 136-170 us. In the app the model loads in one thread, the scheduler
answers in another, and the Attention and Evaluate tabs ran in Gradio's worker threads: an Ask took 5.8-6.7 s,
and after one use of the Attention tab 10.5-11.5 s for as long as the process lived. Here one long-lived thread
does the work, so there is one team. The caller's context variables go with each call (Gradio's progress bar
and request live in them); thread-local state does not.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
import queue
import threading

_jobs: "queue.Queue" = queue.Queue()
_thread: threading.Thread | None = None
_starting = threading.Lock()


def _serve() -> None:
    while True:
        future, context, fn, args, kwargs = _jobs.get()
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(context.run(fn, *args, **kwargs))
        except BaseException as e:  # the caller raises it; this thread goes on serving
            future.set_exception(e)


def _forget_in_child() -> None:
    """A forked child (ZeroGPU's workers) has no model thread: it starts its own at its first call."""
    global _thread, _jobs, _starting
    _thread, _jobs, _starting = None, queue.Queue(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def here() -> bool:
    """Whether the calling thread is the model thread."""
    return _thread is not None and threading.current_thread() is _thread


def on_model_thread(fn, /, *args, **kwargs):
    """fn(*args, **kwargs) on the model thread, waited for; its value returned and its exception raised here.
    Called from the model thread itself it just calls fn (a call inside a call would otherwise wait for itself)."""
    global _thread
    if here():
        return fn(*args, **kwargs)
    with _starting:
        if _thread is None:  # a daemon: a process that exits mid-call is not held open by it
            _thread = threading.Thread(target=_serve, name="laffi-model", daemon=True)
            _thread.start()
    future: concurrent.futures.Future = concurrent.futures.Future()
    _jobs.put((future, contextvars.copy_context(), fn, args, kwargs))
    return future.result()


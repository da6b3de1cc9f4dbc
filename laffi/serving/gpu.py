"""Model work on a ZeroGPU Space's lent GPU; anywhere else, exactly the function it wraps.

Usage:
    import laffi.serving.gpu                     # first thing in app.py: on ZeroGPU `spaces` must come before torch's CUDA
    answer = on_gpu(lambda pairs, variants, cfg: answer_questions(lm, pairs, variants, cfg),
                    duration=lambda pairs, variants, cfg: generation_seconds(len(pairs) * len(variants),
                                                                             cfg.max_new_tokens))
    answers = answer(pairs, ["base", "sft"], GenerationConfig())   # runs inside spaces.GPU(duration=...)

On a ZeroGPU Space (Hugging Face sets SPACES_ZERO_GPU) a GPU is attached only while a function decorated with
`spaces.GPU` runs, in a forked worker process: its arguments and its result cross a process boundary by pickle,
so the wrapped function takes plain data (the model stays in the closure, placed on CUDA at start-up) and its
result is made host data here - every torch tensor in it becomes a numpy array, never a CUDA tensor. State the
worker changes (a cache, an attached adapter) stays in the worker: do such things outside the wrapped call.
Where the `spaces` package is not installed (a laptop, CI, a CPU Space) nothing is wrapped; where it is installed
but this is not ZeroGPU, `spaces.GPU` itself does nothing. Durations are the GPU time asked for, in seconds: a
shorter request waits less in ZeroGPU's queue, one too short is cut off, so they are derived from the work.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import sys
from typing import Callable


def _import_spaces():
    try:  # at import: on ZeroGPU, `spaces` patches torch and refuses to load once CUDA was initialised
        import spaces
    except ImportError:
        return None
    return spaces


SPACES = _import_spaces()
MIN_SECONDS, MAX_SECONDS = 10, 120  # every call pays a worker's start (model to GPU); longer work is split
START_SECONDS = 8.0  # a cold worker moves the model to the GPU before the first token
STEP_SECONDS = 0.05  # one decoding step of a batch on the GPU, generous for a model of a few hundred M params


def generation_seconds(rows: int, new_tokens: int, batch: int = 16, step_seconds: float = STEP_SECONDS) -> int:
    """GPU seconds to generate `new_tokens` for `rows` rows, `batch` rows per forward pass (GenerationConfig's
    default on CUDA), plus a worker's start; within [MIN_SECONDS, MAX_SECONDS]."""
    steps = math.ceil(max(rows, 1) / max(batch, 1)) * max(new_tokens, 1)
    return int(min(MAX_SECONDS, max(MIN_SECONDS, math.ceil(START_SECONDS + steps * step_seconds))))


def attention_seconds(passes: int = 1) -> int:
    """GPU seconds for `passes` single forward passes with attention weights (the Attention tab: one or two)."""
    return int(min(MAX_SECONDS, max(MIN_SECONDS, math.ceil(START_SECONDS + 2 * passes))))


def to_host(value):
    """`value` with every torch tensor in it (in dicts, lists, tuples, dataclasses) as a CPU numpy array."""
    torch = sys.modules.get("torch")  # no torch imported: there can be no tensor
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {k: to_host(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple takes its fields one by one
        return type(value)(*(to_host(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_host(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = {f.name: to_host(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        if any(changed[k] is not getattr(value, k) for k in changed):
            return dataclasses.replace(value, **changed)
    return value


def _clamped(duration):
    if not callable(duration):
        return duration

    @functools.wraps(duration)
    def seconds(*args, **kwargs):
        return int(min(MAX_SECONDS, max(MIN_SECONDS, duration(*args, **kwargs))))
    return seconds


def gpu_task(duration: float | Callable[..., float] = 60, size: str | None = None):
    """Decorator: run the function in `spaces.GPU(duration=...)` where `spaces` is installed (a number of seconds,
    or a function of the same arguments returning one), with its result as host data; else unchanged but for
    that conversion. Apply it when the app is built, before launch: ZeroGPU registers functions at start-up."""

    def decorate(fn):
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def host(*args, **kwargs):
                for item in fn(*args, **kwargs):
                    yield to_host(item)
        else:
            @functools.wraps(fn)
            def host(*args, **kwargs):
                return to_host(fn(*args, **kwargs))
        if SPACES is None:
            return host
        options = {"duration": _clamped(duration)}
        if size:
            options["size"] = size  # "xlarge": a whole GPU, twice the quota
        return SPACES.GPU(**options)(host)

    return decorate


def on_gpu(fn: Callable, duration: float | Callable[..., float] = 60) -> Callable:
    """gpu_task(duration)(fn), for a closure made where the model is at hand (lambdas included)."""
    return gpu_task(duration)(fn)

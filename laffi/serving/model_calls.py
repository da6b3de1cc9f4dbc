"""The app's model calls, each a GPU task (laffi.serving.gpu): on a ZeroGPU Space each runs in `spaces.GPU` with a
duration from its work; anywhere else each is the plain call.

Usage:
    calls = ModelCalls.wrap(lm, zero_gpu=settings.zero_gpu)   # when the app is built, before launch (ZeroGPU
                                                              # registers GPU functions then)
    direct = calls.answer(pairs, variants, cfg)                      # {variant: [Answer]}, one mixed batch
    results = calls.answer_all(pairs, variants, cfg, paths, direct)  # + self-feedback: {variant: [Result]}
    calls.answer(pairs, variants, cfg, on_event=show)  # streams show(GenerationEvent) ...
    calls.streams                                      # ... where that is possible: False on ZeroGPU
    view = calls.attention(context, question, answer, variant)      # AttentionView (numpy arrays)

The model stays in the closures (placed on the device at start-up); the arguments are plain data (strings, the
small config dataclasses, earlier results), because on ZeroGPU they are pickled into a worker process and the
results pickled back. Anything that changes the model (attaching an adapter) happens before these calls, in the
app's process: a change made inside one would stay in the worker. A streaming callback can't cross that process
boundary either, so on ZeroGPU on_event is dropped (`streams` is False) and the call returns its whole result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from laffi.inference.surface import LanguageModel
from laffi.serving.gpu import attention_seconds, generation_seconds, gpu_task


def answer_seconds(pairs, variants, cfg, *rest, **kwargs) -> int:
    return generation_seconds(len(pairs) * len(variants), cfg.max_new_tokens)


def feedback_seconds(pairs, variants, cfg, *rest, **kwargs) -> int:
    from laffi.inference.selffeedback import FEEDBACK_MAX_NEW_TOKENS

    # at most two stages: direct answers not yet made (a base draft among them), then every variant's feedback
    return generation_seconds(len(pairs) * (len(variants) + 1), cfg.max_new_tokens + FEEDBACK_MAX_NEW_TOKENS)


@dataclass(frozen=True)
class ModelCalls:
    answer: Callable
    answer_all: Callable
    attention: Callable
    streams: bool = True  # whether on_event callbacks are honoured (not on ZeroGPU)

    @classmethod
    def wrap(cls, lm: LanguageModel, zero_gpu: bool = False) -> "ModelCalls":
        from laffi.inference.attention import attention_view
        from laffi.inference.generation import answer_questions
        from laffi.inference.selffeedback import answer_all

        def answer(pairs, variants, cfg, on_event=None):
            return answer_questions(lm, pairs, variants, cfg, on_event=on_event)

        def answer_with_feedback(pairs, variants, cfg, paths=None, direct=None, on_event=None):
            return answer_all(lm, pairs, variants, cfg, feedback=True, paths=paths, direct=direct, on_event=on_event)

        def streaming(plain, duration):
            """The GPU task without a callback; with one (and not on ZeroGPU) the plain call, which streams."""
            task = gpu_task(duration=duration)(plain)

            def call(*args, on_event=None):
                return task(*args) if on_event is None or zero_gpu else plain(*args, on_event=on_event)

            return call

        def attention(context, question, answer_text, variant):
            return attention_view(lm, context, question, answer_text, variant)

        return cls(answer=streaming(answer, answer_seconds), answer_all=streaming(answer_with_feedback, feedback_seconds),
                   attention=gpu_task(duration=attention_seconds(1))(attention), streams=not zero_gpu)

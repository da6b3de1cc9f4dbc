"""The app's model, loaded in a background thread so the page is served at once (`python app.py`).

Usage:
    lm = LazyModel(settings)          # nothing loaded yet: cheap, imports no torch
    lm.on_ready = ctx_setup           # runs with the loaded model (in the loading thread) before it counts as ready
    lm.start()                        # loads (and warms up) in a thread, once; later calls do nothing
    lm.ready                          # False while loading; status_text says "Loading the model…"
    lm.variants, lm.model.config      # before it is ready: from the files on disk (adapter folders, config.json or
                                      # the GGUF's header: a first start that still has to convert lays out as fast)
    lm.tokenizer, lm.rows(...)        # anything else waits until the model is ready (or raises its load error)
    LazyModel.of(loaded)              # an already loaded LoadedModel: ready at once (tests, ZeroGPU)

Waiting instead of failing: an event that reaches the model while it loads (an Ask sent right after the page
appeared) blocks in its worker thread until the load finishes, then runs; a failed load is a gr.Error naming why.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from laffi.inference.model_files import config_on_disk
from laffi.inference.models import BASE_VARIANT, ModelConfig, cache_dir_of, discover_adapters
from laffi.inference.surface import LanguageModel, RowGenerator
from laffi.ui.examples import WARM_UP



def warm_up(lm: LanguageModel) -> float:
    """One short answer and one short feedback for every variant, so the first question's answer does not pay
    for first-call costs (the tokenizer's line-end token sets, oneDNN kernels' first shapes) and the example
    passage is kept (laffi.ui.examples); returns seconds."""
    from laffi.inference.generation import GenerationConfig, answer_questions
    from laffi.inference.selffeedback import self_feedback

    start = time.perf_counter()
    short = GenerationConfig(max_new_tokens=2)
    direct = answer_questions(lm, [WARM_UP], lm.variants, short, on_event=lambda event: None)  # the streamed path
    self_feedback(lm, [WARM_UP], direct, short, on_event=lambda event: None)
    return time.perf_counter() - start


class _PendingBase:
    """Stands for lm.model while loading: `.config` from config.json (the Attention tab's layer and head counts);
    any other attribute waits for the real model."""

    def __init__(self, owner: "LazyModel", config: dict):
        self._owner, self.config = owner, SimpleNamespace(**config)

    def __getattr__(self, name):
        return getattr(self._owner.wait().model, name)


class LazyModel:
    """A LoadedModel that may still be loading (see the module's usage): a laffi.inference.surface.LanguageModel
    whose every member is declared here, answered from disk or waiting for the model."""

    def __init__(self, settings, load=None, warm: bool = True):
        self.settings = settings
        self.config = ModelConfig(**settings.model_kwargs())
        self._load = load
        self._warm = warm
        self._lm = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._starting = threading.Lock()
        self._thread: threading.Thread | None = None
        self.timings: dict[str, float] = {}  # load_s, warm_up_s (seconds)
        self.on_ready = None  # called with the loaded model before it counts as ready (AppContext.model_loaded)

    @classmethod
    def of(cls, lm, settings) -> "LazyModel":
        made = cls(settings, warm=False)
        made.config, made._lm = lm.config, lm
        made._ready.set()
        return made

    def start(self) -> "LazyModel":
        """Load in a daemon thread (once); self.on_ready(loaded model) runs in it before the model counts as
        ready. Two callers (build_demo, then launch) may race: the lock makes one thread."""
        with self._starting:
            if self._thread is None and not self._ready.is_set():
                self._thread = threading.Thread(target=self._run, name="laffi-model-load", daemon=True)
                self._thread.start()
        return self

    def _run(self) -> None:
        try:
            from laffi.inference.model_thread import on_model_thread

            # one job on the model thread (where every later model call runs): nothing queued meanwhile runs
            # between loading, on_ready and the warm-up
            lm = on_model_thread(self._load_and_warm)
            self.config, self._lm = lm.config, lm
        except BaseException as e:  # shown to whoever waits, never lost in a thread
            self._error = e
        finally:
            self._ready.set()

    def _load_and_warm(self):
        start = time.perf_counter()
        if self._load is not None:
            lm = self._load()
        else:
            from laffi.inference.models import load_model

            lm = load_model(self.config)
        self.timings["load_s"] = round(time.perf_counter() - start, 2)
        if self.on_ready is not None:
            self.on_ready(lm)
        if self._warm:
            self.timings["warm_up_s"] = round(warm_up(lm), 2)
        return lm

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._lm is not None

    @property
    def failed(self) -> BaseException | None:
        return self._error

    def wait(self, timeout: float | None = None):
        """The loaded model, once it is ready (blocking); a gr.Error with the reason when loading failed. Waiting
        starts the load if nothing started it yet: a wait for a load that nobody starts would never end."""
        from laffi.ui.text import error

        from laffi.inference import model_thread

        self.start()
        if not self._ready.is_set() and model_thread.here():  # the load is queued on this very thread
            raise error("The model is still loading; try again in a moment.")
        if not self._ready.wait(timeout):
            raise error("The model is still loading; try again in a moment.")
        if self._error is not None:
            first = (str(self._error).strip().splitlines() or [type(self._error).__name__])[0][:300]
            raise error(f"The model failed to load, so nothing can be answered: {first}")
        return self._lm

    # What the page is laid out from before the model is ready: files on disk, never the model itself.
    def disk_adapters(self) -> tuple[dict[str, Path], list[str]]:
        folders = [self.config.adapters_dir, self.settings.trained_dir]
        return discover_adapters(os.pathsep.join(str(f) for f in folders if f))

    @property
    def variants(self) -> list[str]:
        if self.ready:
            return self._lm.variants
        return [BASE_VARIANT, *self.disk_adapters()[0]]

    @property
    def adapters(self) -> dict:
        return self._lm.adapters if self.ready else self.disk_adapters()[0]

    @property
    def warnings(self) -> list[str]:
        return self._lm.warnings if self.ready else []

    @property
    def model(self):
        if self.ready:
            return self._lm.model
        config = config_on_disk(self.config.base, cache_dir_of(self.config))
        # a Hub id never downloaded: only the load itself can tell the shape (wait() starts it, never deadlocks)
        return _PendingBase(self, config) if config else self.wait().model

    # The rest of laffi.inference.surface.LanguageModel: the loaded model's, once it is ready (waiting till then).
    @property
    def tokenizer(self):
        return self.wait().tokenizer

    @property
    def precision(self):
        return self.wait().precision

    @property
    def device(self):
        return self.wait().device

    @property
    def generator(self) -> RowGenerator | None:
        return self.wait().generator

    @property
    def prefix_cache(self):
        return self.wait().prefix_cache

    def use_generator(self, generator: RowGenerator | None) -> None:
        self.wait().use_generator(generator)

    def peft_names(self, variants: list[str]) -> list[str]:
        return self.wait().peft_names(variants)

    def can_mix(self, variants: list[str]) -> bool:
        return self.wait().can_mix(variants)

    def rows(self, variants: list[str]):
        return self.wait().rows(variants)

    def untouched_layers(self, variants: list[str]) -> int:
        return self.wait().untouched_layers(variants)

    def max_context_tokens(self, cap: int) -> int:
        return self.wait().max_context_tokens(cap)

    def refresh_adapters(self) -> list[str]:
        return self.wait().refresh_adapters()

    def attach(self, name: str, path: str | Path) -> bool:
        return self.wait().attach(name, path)

    def watch(self, folder: str | Path) -> None:
        self.wait().watch(folder)

"""The typed model surface: what every caller may use of a loaded model, and what generates its rows.

Usage:
    def answer_questions(lm: LanguageModel, ...)     # a LoadedModel, or the app's LazyModel while it loads
    lm.use_generator(VllmBackend.for_model(lm))      # a vLLM server generates (laffi.inference.backends)
    lm.use_generator(None)                           # this process does (laffi.inference.generation.LocalGenerator)

Two implementations of LanguageModel: laffi.inference.models.LoadedModel (the model itself) and
laffi.ui.loading.LazyModel (the app's, which waits for it while it loads). Two of RowGenerator: LocalGenerator
(transformers in this process: streams every row token by token and measures first-token probabilities) and
laffi.inference.vllm.VllmBackend (a server: whole replies, nothing measured). Nothing else is read off a model.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from laffi.inference.events import OnEvent, Row


@runtime_checkable
class RowGenerator(Protocol):
    """Generates replies to rows, in row order, reporting GenerationEvents (laffi.inference.events)."""

    measures_first_token: bool  # whether first_token probabilities come back (False: first_probs stay None)

    def generate(self, rows: list[Row], cfg: Any, on_event: OnEvent | None = None, first_token: Any = None,
                 first_probs: list | None = None) -> list[str]:
        """cfg: laffi.inference.generation.GenerationConfig; first_token: laffi.inference.answerability.FirstToken."""


@runtime_checkable
class LanguageModel(Protocol):
    """One base model with its adapters as named variants (laffi.inference.models.LoadedModel)."""

    config: Any  # laffi.inference.models.ModelConfig

    @property
    def model(self) -> Any: ...  # the transformers (PEFT) model

    @property
    def tokenizer(self) -> Any: ...

    @property
    def device(self) -> Any: ...  # torch.device

    @property
    def variants(self) -> list[str]: ...  # "base", then the adapters' names

    @property
    def adapters(self) -> dict[str, Path]: ...

    @property
    def warnings(self) -> list[str]: ...

    @property
    def precision(self) -> Any: ...  # laffi.inference.precision.Precision: the base weights' dtype and why

    @property
    def generator(self) -> RowGenerator | None: ...  # None: this process generates

    @property
    def prefix_cache(self) -> Any: ...  # laffi.inference.prefix_cache.PrefixCache, or None (off)

    def use_generator(self, generator: RowGenerator | None) -> None: ...

    def peft_names(self, variants: list[str]) -> list[str]: ...

    def can_mix(self, variants: list[str]) -> bool: ...

    def rows(self, variants: list[str]) -> contextlib.AbstractContextManager: ...

    def untouched_layers(self, variants: list[str]) -> int: ...

    def max_context_tokens(self, cap: int) -> int: ...

    def refresh_adapters(self) -> list[str]: ...

    def attach(self, name: str, path: str | Path) -> bool: ...

    def watch(self, folder: str | Path) -> None: ...

"""What generates the answers: transformers in this process (the default), or a vLLM server (laffi.inference.vllm).

Usage:
    lm = load_model(ModelConfig(...))
    use_backend(lm, BackendConfig(backend="vllm", vllm_url="http://127.0.0.1:8000"))   # or from the settings:
    use_backend(lm, BackendConfig.from_settings(Settings.from_env()))
    answer_questions(lm, pairs, variants)     # laffi.inference.generation, unchanged: now answered by the server

The switch is the loaded model's generator (lm.use_generator: laffi.inference.surface.RowGenerator), which
laffi.inference.generation.generate_batched asks, the one function every answer, draft and feedback goes through: `ask`,
`eval`, the pipeline's predict stage and the app's Ask and Evaluate tabs all follow it, and get the same Answer objects
either way. Prompts are still rendered by laffi.inference.prompts with the model's tokenizer, so both backends read
identical prompts. Attention views always use the transformers model (vLLM does not return attention weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from laffi.errors import LaffiError
from laffi.inference.surface import LanguageModel
from laffi.settings import BACKENDS


@dataclass
class BackendConfig:
    """Which engine generates answers (flags of `ask`, `eval`, `predict`, `pipeline`; LAFFI_BACKEND, LAFFI_VLLM_URL)."""

    backend: Literal["transformers", "vllm"] = field(default="transformers", metadata={
        "help": "What generates answers: 'transformers' (in this process) or 'vllm' (a vLLM server through its "
                "OpenAI-compatible API: --vllm_url, or `vllm serve` started on loopback with every adapter)."})
    vllm_url: str | None = field(default=None, metadata={
        "help": "With --backend vllm: a running server's URL (e.g. http://127.0.0.1:8000); unset: laffi starts "
                "`vllm serve` on loopback as a child process and stops it on exit."})
    vllm_args: str = field(default="", metadata={
        "help": "More `vllm serve` flags when laffi starts the server, e.g. '--gpu-memory-utilization 0.8'."})

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise LaffiError(f"--backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}.")

    @classmethod
    def from_settings(cls, settings) -> "BackendConfig":
        return cls(backend=settings.backend, vllm_url=settings.vllm_url)


def use_backend(lm: LanguageModel, cfg: BackendConfig | None, log=None) -> LanguageModel:
    """Make `cfg.backend` generate for `lm` (a LoadedModel); returns lm. vllm: connect to cfg.vllm_url, or start
    `vllm serve` for lm's base model and adapters (minutes on a GPU) and stop it when this process ends."""
    if cfg is None or cfg.backend == "transformers":
        lm.use_generator(None)
        return lm
    from laffi.inference.vllm import VllmBackend

    server = VllmBackend.for_model(lm, url=cfg.vllm_url, extra_args=cfg.vllm_args, log=log)
    lm.use_generator(server)
    return lm

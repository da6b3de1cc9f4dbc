"""The laffi command line: `python -m laffi <command>` (or the `laffi` console command).

Usage:
    python -m laffi ask --context "..." --question "..." [--variants base,sft] [--feedback] [--json]
    python -m laffi eval --data ../shared/data/squad_v2/dev-12-articles.json --articles eval --json --out runs/eval
    python -m laffi predict|annotate|train|pipeline|study|bench ...     (python -m laffi <command> --help)

    args       the options of each command that no library dataclass holds already
    commands   one handler per command, over the stages and the library (laffi.pipeline.steps for annotate/train)

Every command's flags come from the dataclasses it takes - ModelConfig, GenerationConfig, TrainConfig,
BenchConfig and the small ones in laffi.cli.args - through TRL's TrlParser (transformers' HfArgumentParser plus a
`--config FILE.yaml` of the same keys), so each flag's help lives once, beside its default. Model defaults come
from the environment (laffi.settings). A mistake the user can fix prints one sentence and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from laffi.errors import LaffiError


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: str  # handler in laffi.cli.commands, called with one instance of each of the command's dataclasses
    reads_yaml: bool = True  # `--config FILE.yaml` holds flag values (pipeline/study: --config is their own file)


def dataclasses_of(name: str) -> tuple:
    """The dataclasses whose fields are a command's flags, in the order its handler takes them."""
    from laffi.bench import BenchConfig
    from laffi.cli import args as a
    from laffi.inference.backends import BackendConfig
    from laffi.inference.generation import GenerationConfig
    from laffi.inference.models import ModelConfig
    from laffi.pipeline.steps import AnnotateArgs, PredictArgs, TrainDataArgs
    from laffi.squad.data import DataArgs
    from laffi.training.trainer import TrainConfig

    return {"ask": (ModelConfig, GenerationConfig, BackendConfig, a.AskArgs),
            "eval": (ModelConfig, GenerationConfig, BackendConfig, DataArgs, a.EvalArgs),
            "calibrate": (ModelConfig, GenerationConfig, BackendConfig, DataArgs, a.CalibrateArgs),
            "predict": (ModelConfig, GenerationConfig, BackendConfig, DataArgs, PredictArgs),
            "annotate": (ModelConfig, AnnotateArgs),
            "train": (TrainConfig, TrainDataArgs),
            "pipeline": (a.PipelineArgs, BackendConfig), "study": (a.StudyArgs,),
            "bench": (BenchConfig, a.BenchArgs)}[name]


COMMANDS = [
    Command("ask", "Answer one question with every variant, side by side.", "ask"),
    Command("eval", "SQuAD v2 scores of each variant (official metric), with 95 %% intervals.", "evaluate"),
    Command("calibrate", "Choose each variant's no-answer threshold on validation questions; store it with the "
                         "adapter.", "calibrate"),
    Command("predict", "Stage 1: the base model answers training questions.", "predict"),
    Command("annotate", "Stage 2: feedback on each draft (AI, mixed with human).", "annotate"),
    Command("train", "Stage 3: LoRA training (SFT or LaFFi) into adapters/<name>/.", "train"),
    Command("pipeline", "All stages for SFT and LaFFi, then evaluate base, SFT and LaFFi.", "pipeline", False),
    Command("study", "Trials on the validation article, with a summary table.", "study", False),
    Command("bench", "Measure the speed-ups (ratios, one run) and the quality guard.", "bench"),
]
DEFAULT_SPLIT = {"predict": "train"}  # predict reads training questions; eval a dataset id's validation split


def command_parser(name: str):
    """The parser of one command: its dataclasses' fields as flags, model defaults from the environment."""
    from transformers import HfArgumentParser
    from trl import TrlParser

    from laffi.settings import Settings

    cmd = next(c for c in COMMANDS if c.name == name)
    types = dataclasses_of(name)
    kind = TrlParser if cmd.reads_yaml else HfArgumentParser
    parser = kind(types, prog=f"laffi {name}", description=cmd.help)
    defaults = {}
    if any(t.__name__ == "ModelConfig" for t in types):
        defaults = Settings.from_env().model_kwargs()
    if any(t.__name__ == "BackendConfig" for t in types):  # LAFFI_BACKEND / LAFFI_VLLM_URL, as the app reads them
        settings = Settings.from_env()
        defaults.update(backend=settings.backend, vllm_url=settings.vllm_url)
    if name in DEFAULT_SPLIT:
        defaults["split"] = DEFAULT_SPLIT[name]
    parser.set_defaults(**defaults)
    return parser


def parse(name: str, argv: list[str]) -> tuple:
    """One instance of each of the command's dataclasses from argv (and its --config YAML, where it takes one)."""
    parser = command_parser(name)
    try:
        if next(c for c in COMMANDS if c.name == name).reads_yaml:
            return tuple(parser.parse_args_and_config(argv))
        return tuple(parser.parse_args_into_dataclasses(argv))
    except LaffiError:
        raise
    except (ValueError, OSError) as e:  # a --config file that is missing, not YAML, or has unknown keys
        raise LaffiError(f"laffi {name}: {str(e).splitlines()[0]}") from e


def top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laffi", description="LaFFi: natural-language feedback for fine-tuning. "
                                     "`laffi <command> --help` lists a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for c in COMMANDS:
        sub.add_parser(c.name, help=c.help, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    top = top_parser()
    known, _ = top.parse_known_args(argv[:1])
    if known.command is None:
        top.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    from laffi.cli import commands

    try:
        values = parse(known.command, argv[1:])
        return getattr(commands, next(c.run for c in COMMANDS if c.name == known.command))(*values)
    except LaffiError as e:
        print(f"laffi: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("laffi: interrupted", file=sys.stderr)
        return 130

"""CLI commands for the four LaFFi stages: predict, annotate, train, pipeline (registered by laffi.cli).

Usage:
    python -m laffi predict  --data FILE --articles train --limit 400 --out runs/p/predictions.jsonl
    python -m laffi annotate --predictions runs/p/predictions.jsonl --annotator reference --drafts own+synthetic \
                             [--human feedback.csv --human-fraction 0.5] --out runs/p/annotated.jsonl
    python -m laffi train    --method laffi --data runs/p/annotated.jsonl --name laffi
    python -m laffi pipeline --config configs/dev12.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from laffi.errors import LaffiError


def cmd_predict(args) -> int:
    from laffi.cli import _load, _stderr_bar, _warn_problems
    from laffi.data import select_data
    from laffi.generation import GenerationConfig
    from laffi.io import write_jsonl_atomic
    from laffi.stages import predict

    examples, problems = select_data(args.data, args.articles, args.limit, args.seed, split=args.split)
    _warn_problems(problems)
    lm = _load(args)
    bar, progress = _stderr_bar("predict", len(examples))
    records = predict(lm, examples, GenerationConfig(max_new_tokens=args.max_new_tokens,
                                                     batch_size=args.batch_size), progress, variant=args.variant)
    bar.close()
    write_jsonl_atomic(Path(args.out), records)
    print(f"laffi: wrote {len(records)} predictions to {args.out} (load with datasets.load_dataset('json', "
          f"data_files='{args.out}'))", file=sys.stderr)
    return 0


def cmd_annotate(args) -> int:
    from laffi.annotation import annotate_with_human
    from laffi.drafts import add_drafts
    from laffi.io import read_jsonl, write_json_atomic, write_jsonl_atomic

    if args.human_fraction and not args.human:
        raise LaffiError("--human-fraction needs --human FILE (CSV, JSONL or the app's feedback .sqlite).")
    records, mix = add_drafts(read_jsonl(args.predictions), args.drafts, seed=args.seed,
                              k=args.synthetic_per_question)
    lm = None
    if args.annotator == "llm":
        from laffi.cli import _load

        lm = _load(args)
    annotated, report = annotate_with_human(records, args.annotator, seed=args.seed, lm=lm, on_fail=args.on_fail,
                                            human=args.human, human_fraction=args.human_fraction)
    report["drafts"] = {"mix": args.drafts, "per_kind": mix}
    for p in report.get("human_problems", []):
        print(f"laffi: warning: human feedback {p}", file=sys.stderr)
    write_jsonl_atomic(Path(args.out), annotated)
    write_json_atomic(Path(args.out).with_suffix(".report.json"), report)
    print(json.dumps(report), file=sys.stderr if not args.json else sys.stdout)
    return 0


def training_records(source: str, articles: str | None, limit: int | None, seed: int) -> list[dict]:
    """What `train --data` reads: records written by `predict`/`annotate` (JSONL with a prediction per row), or
    SQuAD questions (a file or dataset id, narrowed by --articles/--limit) for SFT, which needs no prediction."""
    from laffi.data import select_data
    from laffi.io import read_jsonl

    if str(source).endswith(".jsonl") and Path(source).is_file():
        rows = read_jsonl(source)
        if rows and isinstance(rows[0], dict) and ("prediction" in rows[0] or "feedback" in rows[0]):
            return rows
    examples, problems = select_data(source, articles, limit, seed)
    from laffi.cli import _warn_problems

    _warn_problems(problems)
    return [e.to_dict() for e in examples]


def cmd_train(args) -> int:
    from laffi.training import TrainConfig, preflight, train_adapter

    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names and v is not None})
    preflight(cfg)
    records = training_records(args.data, args.articles, args.limit, args.data_seed)
    path = train_adapter(records, cfg, resume=not args.no_resume)
    print(f"laffi: adapter written to {path}" if path != Path(cfg.work_dir) else
          f"laffi: training stopped; resume with the same command (checkpoints in {path})", file=sys.stderr)
    return 0


def cmd_pipeline(args) -> int:
    from laffi.report import results_markdown
    from laffi.stages import PipelineConfig, Stages

    overrides = {"overwrite": True} if args.overwrite else {}
    cfg = PipelineConfig.from_yaml(args.config, **overrides)
    result = Stages(cfg, force=args.force, log=lambda m: print(f"laffi: {m}", file=sys.stderr)).all()
    print(json.dumps({k: v for k, v in result.items() if k != "config"}) if args.json else results_markdown(result))
    return 0


def cmd_study(args) -> int:
    from laffi.study import load_study, run_study, study_markdown

    rows = run_study(load_study(args.config), only=args.only.split(",") if args.only else None,
                     log=lambda m: print(f"laffi: {m}", file=sys.stderr))
    print(json.dumps(rows) if args.json else study_markdown(rows))
    return 0


def _yes_no(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, not {value!r}")


def add_commands(sub, model_parent, positive_int) -> None:
    from laffi.training import TrainConfig

    p = sub.add_parser("predict", parents=[model_parent], help="Stage 1: the base model answers training questions.")
    p.add_argument("--data", required=True, help="SQuAD JSON/JSONL file or HF dataset id.")
    p.add_argument("--split", default="train", help="Split of a HF dataset id (default: train).")
    p.add_argument("--articles", help="Split name (train, validation, eval) or comma-separated titles.")
    p.add_argument("--limit", type=positive_int, help="Seeded sample of N questions.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", default="base", help="Which variant answers (default: base).")
    p.add_argument("--batch-size", type=positive_int, help="Rows per batch (default: 16 on a GPU, 8 on a CPU).")
    p.add_argument("--out", required=True, help="Output JSONL (a dataset loadable with `datasets`).")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("annotate", parents=[model_parent], help="Stage 2: feedback on each prediction.")
    p.add_argument("--predictions", required=True, help="JSONL written by `predict`.")
    p.add_argument("--annotator", choices=["reference", "llm"], default="reference",
                   help="AI annotator: deterministic reference (default) or an LLM (--base), checked.")
    p.add_argument("--on-fail", choices=["replace", "flag"], default="replace",
                   help="LLM feedback that fails the check: replace by reference (default) or keep, flagged.")
    p.add_argument("--human", help="Human feedback: CSV/JSONL (qid or question, prediction, feedback, annotator) "
                                   "or the app's feedback .sqlite.")
    p.add_argument("--human-fraction", type=float, default=0.0, help="Share of examples with human feedback.")
    p.add_argument("--drafts", choices=["own", "own+synthetic"], default="own",
                   help="Feedback on the model's own answers only (default), or also on synthetic drafts (gold, "
                        "near-miss, other span, 'no answer', plausible answer) so every verdict is learned.")
    p.add_argument("--synthetic-per-question", type=positive_int, default=1, help="Synthetic drafts per question.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="Output JSONL.")
    p.add_argument("--json", action="store_true", help="Print the report on stdout.")
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser("train", help="Stage 3: LoRA training (SFT or LaFFi) into adapters/<name>/.")
    p.add_argument("--data", required=True, help="JSONL written by `annotate` (or `predict`), or for SFT a SQuAD "
                                                 "file / dataset id.")
    p.add_argument("--articles", help="With SQuAD --data: a split name (train, validation, eval) or titles.")
    p.add_argument("--limit", type=positive_int, help="With SQuAD --data: a seeded sample of N questions.")
    p.add_argument("--data-seed", type=int, default=0, help="With SQuAD --data: the sampling seed (default: 0).")
    p.add_argument("--no-resume", action="store_true", help="Start over even if checkpoints exist.")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = {"int": int, "float": float, "bool": _yes_no}.get(str(f.type).split(" ")[0], str)
        p.add_argument(flag, dest=f.name, type=kind, default=None,
                       help=f"{f.metadata.get('help', '')} (default: {f.default})")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("pipeline", help="Stages 1-3 for SFT and LaFFi, then evaluate base, SFT and LaFFi.")
    p.add_argument("--config", required=True, help="YAML file with PipelineConfig fields (configs/dev12.yaml).")
    p.add_argument("--force", action="store_true", help="Redo every stage even if its output exists.")
    p.add_argument("--overwrite", action="store_true", help="Replace adapters of the same names trained with other "
                                                            "settings (otherwise refused).")
    p.add_argument("--json", action="store_true", help="Print results as JSON instead of a Markdown table.")
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("study", help="Trials on the validation article (pipeline runs that differ from a base), "
                                     "with a summary table.")
    p.add_argument("--config", required=True, help="YAML with 'base' (pipeline settings) and 'trials'.")
    p.add_argument("--only", help="Comma-separated trial names to run (default: every trial).")
    p.add_argument("--json", action="store_true", help="Print the summary rows as JSON.")
    p.set_defaults(func=cmd_study)

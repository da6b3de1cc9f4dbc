"""What each command does, given its parsed dataclasses (laffi.cli parses; these only call the library).

Usage:  laffi.cli.main(["eval", "--data", "squad.json", "--json"])   (not called directly)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from laffi.errors import LaffiError


# --- shared by the commands ----------------------------------------------------------------------------------------
def load(model_cfg, backend=None):
    from laffi.inference.backends import use_backend
    from laffi.inference.models import load_model

    from laffi.inference.answerability import calibration_warnings

    lm = load_model(model_cfg)
    for w in lm.warnings + calibration_warnings(lm):
        print(f"laffi: warning: {w}", file=sys.stderr)
    if lm.precision is not None:
        print(f"laffi: {lm.precision.reason}", file=sys.stderr)
    return use_backend(lm, backend, log=lambda m: print(f"laffi: {m}", file=sys.stderr))


def chosen_variants(value: str | None, lm) -> list[str]:
    if not value:
        return lm.variants
    names = [v.strip() for v in value.split(",") if v.strip()]
    lm.peft_names(names)  # raises a LaffiError naming an unknown variant
    return names


def stderr_bar(desc: str, total: int):
    """A tqdm bar on stderr and the on_event callback that drives it: one step per finished row (the events' total
    wins: how many rows a run generates can depend on the variants' answer paths)."""
    from tqdm.auto import tqdm

    from laffi.inference.events import count_done

    bar = tqdm(total=total, desc=desc, unit="row", file=sys.stderr)

    def progress(done: int, total_now: int) -> None:
        bar.total = total_now
        bar.update(done - bar.n)

    return bar, count_done(progress)


def warn_problems(problems: list[str]) -> None:
    for p in problems[:10]:
        print(f"laffi: warning: skipped {p}", file=sys.stderr)
    if len(problems) > 10:
        print(f"laffi: warning: ... and {len(problems) - 10} more bad records skipped", file=sys.stderr)


def selected(data) -> list:
    examples, problems = data.select()
    warn_problems(problems)
    return examples


# --- ask and eval ----------------------------------------------------------------------------------------------------
LIVE_FIELDS = {"answer": "partial", "feedback": "partial_feedback"}  # what `ask --stream` shows of each stage


class LiveBlock:
    """Lines redrawn in place on a terminal (ANSI: back to the block's first line, clear, rewrite), at most every
    50 ms; `ask --stream` shows each variant's reply growing this way."""

    def __init__(self, out):
        self.out, self.height, self.last = out, 0, 0.0

    def draw(self, lines: list[str], force: bool = False) -> None:
        import time

        if not force and time.monotonic() - self.last < 0.05:
            return
        self.last = time.monotonic()
        if self.height:
            self.out.write(f"\x1b[{self.height}F")
        self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
        self.height = len(lines)
        self.out.flush()


def answer_lines(out: dict, variants: list[str]) -> list[str]:
    """What `ask` prints for each variant: its answer and path, then the draft, feedback and revised answer."""
    width = max(len(v) for v in variants)
    lines = []
    for v in variants:
        r = out.get(v, {})
        shown = r["answer"] or "(no answer)" if "answer" in r else r.get("partial", "…")
        lines.append(f"{v:<{width}}  {shown}" + (f"   [{r['answer_path']}]" if "answer_path" in r else ""))
        if r.get("na_prob") is not None:  # what it thinks, even where it abstains
            lines.append(f"{'':<{width}}  best span: {r.get('span') or '(none)'} · answerable "
                         f"{100 * (1 - r['na_prob']):.0f} %" + (f" (answers from {100 * (1 - r['threshold']):.0f} %)"
                                                                if r.get("threshold") is not None else ""))
        if "feedback" in r or "partial_feedback" in r:
            if r.get("draft_by"):
                lines.append(f"{'':<{width}}  draft ({r['draft_by']}): {r['draft'] or '(no answer)'}")
            lines.append(f"{'':<{width}}  feedback:  {r.get('feedback', r.get('partial_feedback', ''))}")
            if "revised_answer" in r:
                lines.append(f"{'':<{width}}  revised:   {r['revised_answer'] or '(no answer)'}")
    return lines


def ask(model_cfg, gen, backend, args) -> int:
    from laffi.inference.prompts import first_line, fit_context
    from laffi.inference.selffeedback import answer_all

    if not args.context.strip():
        raise LaffiError("--context is empty; pass the passage the question is about.")
    if not args.question.strip():
        raise LaffiError("--question is empty; pass a question about the passage.")
    lm = load(model_cfg, backend)
    variants = chosen_variants(args.variants, lm)
    context, notice = fit_context(lm.tokenizer, args.context, args.question,
                                  lm.max_context_tokens(args.max_context_tokens))
    if notice:
        print(f"laffi: note: {notice}", file=sys.stderr)
    live, partial = None, {v: {} for v in variants}
    if args.stream and not args.json and sys.stdout.isatty():
        live = LiveBlock(sys.stdout)

        def on_event(event) -> None:  # the answers and feedback as they are written (not a chooser's scoring)
            if event.stage in LIVE_FIELDS:
                partial[event.variant][LIVE_FIELDS[event.stage]] = first_line(event.text)
                live.draw(answer_lines(partial, variants))

    results = answer_all(lm, [(context, args.question)], variants, gen, feedback=args.feedback,
                         on_event=on_event if live else None)
    out = {v: results[v][0].fields() for v in variants}
    if args.json:
        precision = lm.precision.as_dict() if lm.precision is not None else None
        print(json.dumps({"answers": out, "precision": precision}, ensure_ascii=False))
    elif live:
        live.draw(answer_lines(out, variants), force=True)
    else:
        print("\n".join(answer_lines(out, variants)))
    return 0


def evaluate(model_cfg, gen, backend, data, args) -> int:
    from laffi.evaluation.evaluate import evaluate_variants
    from laffi.evaluation.report import text_table

    examples = selected(data)
    lm = load(model_cfg, backend)
    variants = chosen_variants(args.variants, lm)
    compared_pairs(args.compare, variants)  # a mistyped pair: said now, not after the evaluation
    bar, on_event = stderr_bar("eval", len(examples) * len(variants))
    result = evaluate_variants(lm, examples, variants, gen, out_dir=args.out, on_event=on_event,
                               feedback=args.feedback)
    bar.close()
    from laffi.evaluation.report import comparisons

    pairs = comparisons(result["per_question"], variants, compared_pairs(args.compare, variants))
    if args.json:
        print(json.dumps({"n": result["n"], "variants": result["variants"], "comparisons": pairs}))
    else:
        print(text_table(result))
        print("\n".join(f"{c['a']} − {c['b']}: {c['metric']} {c['diff']:+.1f} [{c['lo']:+.1f}, {c['hi']:+.1f}] "
                        f"({c['verdict']})" for c in pairs))
    if args.out:
        from laffi.io import write_json_atomic

        write_json_atomic(Path(args.out) / "comparisons.json", pairs)
        print(f"laffi: wrote {args.out}/metrics.json, comparisons.json and per-variant predictions", file=sys.stderr)
    return 0


def compared_pairs(asked: str | None, variants: list[str]) -> list[tuple[str, str]]:
    """--compare's pairs (a:b of evaluated variants), checked before any work."""
    pairs = []
    for item in filter(None, (i.strip() for i in (asked or "").split(","))):
        a, sep, b = item.partition(":")
        if not sep or a not in variants or b not in variants:
            raise LaffiError(f"--compare takes pairs of evaluated variants as a:b ({', '.join(variants)}), not "
                             f"{item!r}.")
        pairs.append((a, b))
    return pairs


def predict(model_cfg, gen, backend, data, args) -> int:
    from laffi.feedback.drafts import own_drafts as run_predict
    from laffi.io import write_jsonl_atomic

    examples = selected(data)
    if args.from_eval:  # answers evaluated before: no model to load
        from laffi.feedback.drafts import predicted_drafts

        records = predicted_drafts(examples, [f.strip() for f in args.from_eval.split(",") if f.strip()])
    else:
        lm = load(model_cfg, backend)
        bar, on_event = stderr_bar("predict", len(examples))
        records = run_predict(lm, examples, gen, on_event, variant=args.variant)
        bar.close()
    write_jsonl_atomic(Path(args.out), records)
    print(f"laffi: wrote {len(records)} predictions to {args.out} (load with datasets.load_dataset('json', "
          f"data_files='{args.out}'))", file=sys.stderr)
    return 0


def annotate(model_cfg, args) -> int:
    from laffi.io import read_jsonl, write_json_atomic, write_jsonl_atomic
    from laffi.pipeline.steps import annotate_records

    if args.drafts == "synthetic" and not str(args.predictions).endswith(".jsonl"):  # SQuAD data: no draft needed
        from laffi.squad.data import select_data

        examples, problems = select_data(args.predictions, args.articles, args.limit, args.seed)
        warn_problems(problems)
        source = [e.to_dict() for e in examples]
    else:
        source = read_jsonl(args.predictions)
    annotated, report = annotate_records(source, args, lm=load(model_cfg) if args.annotator == "llm" else None,
                                         log=lambda m: print(f"laffi: {m}", file=sys.stderr))
    write_jsonl_atomic(Path(args.out), annotated)
    write_json_atomic(Path(args.out).with_suffix(".report.json"), report)
    print(json.dumps(report), file=sys.stdout if args.json else sys.stderr)
    return 0


def train(tcfg, data) -> int:
    from laffi.pipeline.steps import records_for_training, train_records
    from laffi.settings import Settings
    from laffi.training.distributed import stop_everywhere_callback

    def log(m):
        print(f"laffi: {m}", file=sys.stderr)

    settings = Settings.from_env()  # WORLD_SIZE > 1: this process is one rank of `accelerate launch`
    result = train_records(lambda: records_for_training(data, log), tcfg, data,
                           [stop_everywhere_callback()] if settings.world_size > 1 else [], log, settings=settings)
    print(f"laffi: adapter written to {result.path}" if result.finished else
          f"laffi: training stopped; resume with the same command (checkpoints in {result.path})", file=sys.stderr)
    return 0


def pipeline(args, backend) -> int:
    from laffi.evaluation.report import results_markdown
    from laffi.pipeline.config import PipelineConfig
    from laffi.pipeline.stages import Stages
    from laffi.settings import Settings

    cfg = PipelineConfig.from_yaml(args.config, **({"overwrite": True} if args.overwrite else {}))
    if args.num_processes:
        cfg.train = {**cfg.train, "num_processes": args.num_processes}
    result = Stages(cfg, force=args.force, log=lambda m: print(f"laffi: {m}", file=sys.stderr),
                    backend=backend, settings=Settings.from_env()).all()
    print(json.dumps({k: v for k, v in result.items() if k != "config"}) if args.json else results_markdown(result))
    return 0


def study(args) -> int:
    from laffi.pipeline.study import load_study, run_study, study_markdown
    from laffi.settings import Settings

    rows = run_study(load_study(args.config), only=args.only.split(",") if args.only else None,
                     log=lambda m: print(f"laffi: {m}", file=sys.stderr), settings=Settings.from_env())
    print(json.dumps(rows) if args.json else study_markdown(rows))
    return 0


def bench(cfg, args) -> int:
    from dataclasses import replace

    from laffi.bench import run_bench, table

    if args.quick:
        cfg = replace(cfg, repeats=1, eval_questions=8, quality_questions=10, train_steps=2)
    from laffi.settings import Settings

    report = run_bench(cfg, Settings.from_env(), log=lambda m: print(m, file=sys.stderr))
    text = json.dumps(report, indent=2)
    if args.out:
        from laffi.io import write_text_atomic

        write_text_atomic(args.out, text + "\n")
    print(text)
    print(table(report))
    return 0


def calibrate(model_cfg, gen, backend, data, args) -> int:
    from laffi.evaluation.evaluate import calibrate_variants

    examples = selected(data)
    lm = load(model_cfg, backend)
    variants = chosen_variants(args.variants, lm)
    bar, on_event = stderr_bar("calibrate", len(examples) * len(variants))
    from laffi.squad.data import dataset_record

    chosen_on = {**dataset_record(data.data), "articles": data.articles, "limit": data.limit, "seed": data.seed}
    cals = calibrate_variants(lm, examples, variants, gen, chosen_on, out_dir=args.out, on_event=on_event,
                              write=not args.dry_run)
    bar.close()
    from dataclasses import asdict

    if args.json:
        print(json.dumps({v: asdict(c) for v, c in cals.items()}))
    else:
        for v, c in cals.items():
            print(f"{v}: abstain when na_prob ({c.na_prob}) > {c.threshold:.4f}  -> here F1 {c.validation['f1']:.1f}, "
                  f"abstains {c.validation['abstain']:.1f} %, AUC {c.validation['auc']}")
    if not args.dry_run:
        print("laffi: thresholds written (calibration.json in each adapter folder; the base model's in "
              "base-calibration.json beside them)", file=sys.stderr)
    return 0

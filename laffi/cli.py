"""The laffi command line.

Usage:
    python -m laffi ask --context "..." --question "..." [--variants base,sft] [--json]
    python -m laffi eval --data ../shared/data/squad_v2/dev-12-articles.json --limit 50 --json --out runs/eval
    python -m laffi predict|annotate|train|pipeline ...      (the LaFFi stages: laffi/cli_pipeline.py)

Every command takes the model options (--base, --adapters-dir, --quantize, --device, --dtype). A mistake the
user can fix (unknown variant, missing file, malformed data) prints one sentence to stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from laffi.errors import LaffiError


def _model_args() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model")
    g.add_argument("--base", default=os.environ.get("LAFFI_BASE", "embedded"),
                   help="'embedded' (default), a HF model id, a local model folder or a .gguf file.")
    g.add_argument("--adapters-dir", default=os.environ.get("LAFFI_ADAPTERS_DIR", "adapters"),
                   help="Folder of PEFT adapters; each sub-folder is a variant (default: adapters).")
    g.add_argument("--quantize", choices=["8bit", "4bit"], default=None, help="bitsandbytes loading (CUDA).")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto).")
    g.add_argument("--dtype", default="auto", help="auto, float32, float16 or bfloat16 (default: auto).")
    g.add_argument("--no-cpu-kernels", dest="cpu_kernels", action="store_false",
                   help="On a CPU, keep torch's own linear layers (see laffi.kernels; results agree to ~1e-6).")
    g.add_argument("--max-new-tokens", type=int, default=32, help="Most tokens per answer (default: 32).")
    return p


def _variants_arg(value: str | None, lm) -> list[str]:
    if not value:
        return lm.variants
    names = [v.strip() for v in value.split(",") if v.strip()]
    lm.peft_names(names)  # raises a LaffiError naming an unknown variant
    return names


def _load(args):
    from laffi.models import ModelConfig, load_model

    lm = load_model(ModelConfig(base=args.base, adapters_dir=args.adapters_dir, quantize=args.quantize,
                                device=args.device, dtype=args.dtype, cpu_kernels=args.cpu_kernels))
    for w in lm.warnings:
        print(f"laffi: warning: {w}", file=sys.stderr)
    return lm


def _stderr_bar(desc: str, total: int):
    """A tqdm bar on stderr and the progress(done, total) callback that drives it (the callback's total wins:
    how many rows a run generates can depend on the variants' answer paths)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="row", file=sys.stderr)

    def progress(done: int, total_now: int) -> None:
        bar.total = total_now
        bar.update(done - bar.n)

    return bar, progress


def _warn_problems(problems: list[str]) -> None:
    for p in problems[:10]:
        print(f"laffi: warning: skipped {p}", file=sys.stderr)
    if len(problems) > 10:
        print(f"laffi: warning: ... and {len(problems) - 10} more bad records skipped", file=sys.stderr)


def cmd_ask(args) -> int:
    from laffi.generation import GenerationConfig
    from laffi.prompts import fit_context
    from laffi.selffeedback import answer_all

    if not args.context.strip():
        raise LaffiError("--context is empty; pass the passage the question is about.")
    if not args.question.strip():
        raise LaffiError("--question is empty; pass a question about the passage.")
    lm = _load(args)
    variants = _variants_arg(args.variants, lm)
    context, notice = fit_context(lm.tokenizer, args.context, args.question,
                                  lm.max_context_tokens(args.max_context_tokens))
    if notice:
        print(f"laffi: note: {notice}", file=sys.stderr)
    pair = [(context, args.question)]
    results = answer_all(lm, pair, variants, GenerationConfig(max_new_tokens=args.max_new_tokens),
                         feedback=args.feedback)
    out = {v: results[v][0].fields() for v in variants}
    if args.json:
        print(json.dumps({"answers": out}, ensure_ascii=False))
    else:
        width = max(len(v) for v in variants)
        for v in variants:
            r = out[v]
            print(f"{v:<{width}}  {r['answer'] or '(no answer)'}   [{r['answer_path']}]")
            if "feedback" in r:
                print(f"{'':<{width}}  draft ({r['draft_by']}): {r['draft'] or '(no answer)'}")
                print(f"{'':<{width}}  feedback:  {r['feedback']}")
                print(f"{'':<{width}}  revised:   {r['revised_answer'] or '(no answer)'}")
    return 0


def cmd_eval(args) -> int:
    from laffi.data import load_squad, sample_examples, select_articles
    from laffi.evaluation import evaluate_variants
    from laffi.generation import GenerationConfig

    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    examples, problems = load_squad(args.data, split=args.split)
    _warn_problems(problems)
    examples = sample_examples(select_articles(examples, args.articles), args.limit, args.seed)
    lm = _load(args)
    variants = _variants_arg(args.variants, lm)
    bar, progress = _stderr_bar("eval", len(examples) * len(variants))
    result = evaluate_variants(lm, examples, variants, gen, out_dir=args.out, progress=progress,
                               feedback=args.feedback)
    bar.close()
    if args.json:
        print(json.dumps({"n": result["n"], "variants": result["variants"]}))
    else:
        from laffi.report import text_table

        print(text_table(result))
    if args.out:
        print(f"laffi: wrote {args.out}/metrics.json and per-variant predictions", file=sys.stderr)
    return 0


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laffi", description="LaFFi: natural-language feedback for fine-tuning.")
    sub = parser.add_subparsers(dest="command", required=True)
    model = _model_args()

    p = sub.add_parser("ask", parents=[model], help="Answer one question with every variant, side by side.")
    p.add_argument("--context", required=True, help="The passage.")
    p.add_argument("--question", required=True, help="A question about the passage.")
    p.add_argument("--max-context-tokens", type=_positive_int, default=2048,
                   help="Longer passages are cut to the sentences around the best match (default: 2048).")
    p.add_argument("--variants", help="Comma-separated variants (default: all, e.g. base,sft,laffi).")
    p.add_argument("--json", action="store_true", help='Print {"answers": {variant: {"answer": ...}}}.')
    p.add_argument("--feedback", action="store_true",
                   help="Every variant also predicts feedback on its draft and names a revised answer (variants whose "
                        "answer path is 'via feedback' always do).")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("eval", parents=[model], help="SQuAD v2 EM/F1 of each variant (official algorithm).")
    p.add_argument("--data", required=True, help="SQuAD JSON/JSONL file, or a HF dataset id (needs the hub).")
    p.add_argument("--split", default="validation", help="Split of a HF dataset id (default: validation).")
    p.add_argument("--articles", help="A split name (train, validation, eval) or comma-separated titles.")
    p.add_argument("--limit", type=_positive_int, help="Evaluate a seeded random sample of N questions.")
    p.add_argument("--seed", type=int, default=0, help="Sampling seed (default: 0).")
    p.add_argument("--variants", help="Comma-separated variants (default: all).")
    p.add_argument("--batch-size", type=_positive_int, help="Rows per batch (default: 16 on a GPU, 8 on a CPU).")
    p.add_argument("--out", help="Write predictions, per-example scores and metrics.json here.")
    p.add_argument("--json", action="store_true", help="Print the metrics as JSON.")
    p.add_argument("--feedback", action="store_true",
                   help="Every variant also predicts feedback on its draft: F1 via feedback, verdict agreement and "
                        "balanced verdict accuracy (variants whose answer path is 'via feedback' always do).")
    p.set_defaults(func=cmd_eval)

    from laffi.cli_pipeline import add_commands

    add_commands(sub, model, _positive_int)
    from laffi.bench import add_command as add_bench

    add_bench(sub, _positive_int)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return args.func(args)
    except LaffiError as e:
        print(f"laffi: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("laffi: interrupted", file=sys.stderr)
        return 130

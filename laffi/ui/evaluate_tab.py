"""The Evaluate tab: SQuAD v2 on N questions (the shared file or an upload) for chosen variants, with self-feedback
metrics, a bar chart, a per-example drill-down and the predictions to download.

Usage:  build_evaluate_tab(ctx) inside a gr.Blocks. The README's numbers come from the same evaluate_variants().
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import gradio as gr

from laffi.errors import LaffiError
from laffi.evaluation.evaluate import evaluate_variants
from laffi.evaluation.report import UNIT_KEYS
from laffi.inference.events import count_done
from laffi.inference.generation import GenerationConfig
from laffi.squad.data import ARTICLE_SPLITS, load_squad, sample_examples, select_articles
from laffi.ui.context import data_path, ordered, upload_message
from laffi.ui.text import error, name_range_errors, warning

# F1 is at each variant's own threshold (chosen on validation: calibration.json); "best F1" is chosen on the very
# questions it scores (optimistic); the "always no answer" row is the policy that needs no model.
METRICS = [("EM", "exact"), ("F1", "f1"), ("HasAns F1", "HasAns_f1"), ("NoAns EM", "NoAns_exact"),
           ("abstain %", "abstain"), ("span HasAns F1", "span_HasAns_f1"), ("answerability AUC", "auc"),
           ("best F1 (optimistic)", "best_f1"), ("F1 via feedback", "revised_f1"),
           ("verdict agreement", "verdict_agreement"), ("balanced verdict acc.", "balanced_verdict_accuracy")]
PERCENT = [(label, k) for label, k in METRICS if k not in UNIT_KEYS]  # what the bar chart draws (0-100)


def metrics_table(result: dict) -> list[list]:
    return [[v, *(round(m[k], 3 if k in UNIT_KEYS else 2) if m.get(k) is not None else None for _, k in METRICS)]
            for v, m in result["variants"].items()]


def bar_chart(result: dict):
    import plotly.graph_objects as go

    fig = go.Figure()
    for v, m in result["variants"].items():
        keys = [(label, k) for label, k in PERCENT if m.get(k) is not None]
        fig.add_bar(name=v, x=[label for label, _ in keys], y=[m[k] for _, k in keys])
    fig.update_layout(barmode="group", yaxis_title="%", yaxis_range=[0, 100], height=360,
                      margin=dict(l=40, r=10, t=30, b=40), title=f"SQuAD v2, n = {result['n']}")
    return fig


def drilldown(rows_by_variant: dict[str, list[dict]], show: str) -> list[list]:
    """One table row per question: gold, then each variant's answer and feedback; filtered."""
    variants = list(rows_by_variant)
    out = []
    for i, first in enumerate(rows_by_variant[variants[0]]):
        per = [rows_by_variant[v][i] for v in variants]
        ems = [r["em"] for r in per]
        if show == "wrong answers" and all(ems):
            continue
        if show == "variants disagree" and len(set(ems)) == 1:
            continue
        gold = " | ".join(first["gold_answers"]) or "(no answer)"
        cells = []
        for r in per:
            cells += [f"{r['prediction'] or '(no answer)'}  [EM {r['em']}, F1 {r['f1']:.2f}]", r.get("feedback", "")]
        out.append([first["qid"], first["question"], gold, *cells])
    return out


def build_evaluate_tab(ctx, admin):
    """Lays the tab out; returns (refresh, its inputs, its outputs): the list of variants follows new adapters."""
    s = ctx.settings
    names = ctx.variant_names()
    with gr.Row():
        with gr.Column():
            source = gr.Radio(["shared SQuAD file", "upload"] if s.enable_upload else ["shared SQuAD file"],
                              value="shared SQuAD file", label="Data")
            upload = gr.File(label="SQuAD v1.1/v2.0 JSON or JSONL", file_types=[".json", ".jsonl"], visible=False,
                             elem_id="eval-upload")
            articles = gr.Dropdown(["all", *ARTICLE_SPLITS], value="eval", label="Articles (fixed split)",
                                   elem_id="eval-articles")
        with gr.Column():
            n = gr.Slider(1, s.max_eval_questions, value=min(20, s.max_eval_questions), step=1,
                          label="Questions (seeded sample)")
            seed = gr.Number(0, precision=0, label="Seed")
            variants = gr.CheckboxGroup(names, value=names, label="Variants", elem_id="eval-variants")
            with_feedback = gr.Checkbox(True, label="Self-feedback (revised F1, verdict agreement; ~2x time)")
            run = gr.Button("Evaluate", variant="primary")
    name_range_errors(n)
    source.change(lambda data_source: gr.File(visible=data_source == "upload"), source, upload, api_name=False)
    gr.Markdown("F1 is each variant's answer at its own no-answer threshold (chosen on the validation article); "
                "read it against the *always no answer* row. The README's results come from `python -m laffi "
                "calibrate` on the validation article, then `python -m laffi eval` on the evaluation articles "
                "(200 questions, seed 0): the commands are in README, Results.")
    table = gr.Dataframe(headers=["variant", *(label for label, _ in METRICS)], interactive=False)
    chart = gr.Plot()
    with gr.Row():
        show = gr.Radio(["all", "wrong answers", "variants disagree"], value="wrong answers", label="Show")
        download = gr.File(label="Predictions (official format, per variant) and per-example files", interactive=False)
    detail = gr.Dataframe(headers=["qid", "question", "gold"], interactive=False, wrap=True, label="Per question")
    last = gr.State(None)

    def evaluate(unlocked, data_source, upload_file, articles, questions, seed, variants, self_feedback,
                 progress=gr.Progress()):
        if not variants:
            raise error("Choose at least one variant to evaluate.")
        questions = int(questions)
        if not 1 <= questions <= s.max_eval_questions:
            raise error(f"Questions (seeded sample) must be between 1 and {s.max_eval_questions}, not {questions}.")
        path = data_path(s, data_source, upload_file, unlocked)
        try:
            examples, problems = load_squad(path)
            if problems:  # the file's own words: shown as text
                warning(f"{len(problems)} bad record(s) skipped; first: {upload_message(problems[0], path)[:200]}")
            examples = sample_examples(select_articles(examples, None if articles == "all" else articles), questions,
                                       int(seed or 0))
        except LaffiError as e:
            raise error(upload_message(e, path)) from e
        progress(0, desc="waiting for the model")
        def run_it():  # the whole evaluation in one turn on the model thread: the room's Asks wait, told so
            ctx.sync_adapters()  # a variant trained since the page loaded
            unknown = [v for v in variants if v not in ctx.lm.variants]
            if unknown:
                raise error(f"The variant {unknown[0]!r} is not loaded; choose among {', '.join(ctx.lm.variants)}.")
            chosen = ordered(variants)
            out = s.runs_dir / "eval" / f"{dt.datetime.now():%Y%m%d-%H%M%S}"
            progress(0, desc="answering")
            return chosen, out, evaluate_variants(
                ctx.lm, examples, chosen, GenerationConfig(), out_dir=out, feedback=self_feedback,
                on_event=count_done(lambda done, total: progress(done / total, desc="evaluating")))

        ctx.lm.wait()  # loaded before the turn: the load itself runs on the model thread
        chosen, out, result = ctx.scheduler.run_exclusive(run_it)
        archive = shutil.make_archive(str(out), "zip", out)
        rows = {v: _read_rows(out / v / "examples.jsonl") for v in chosen}  # the model variants, not the policy
        return metrics_table(result), bar_chart(result), archive, rows, _detail(rows, "wrong answers")

    run.click(evaluate, [admin, source, upload, articles, n, seed, variants, with_feedback],
              [table, chart, download, last, detail], api_name="evaluate", concurrency_id="model",
              concurrency_limit=1)

    def evaluate_filter(rows, show):
        return _detail(rows, show) if rows else None

    show.change(evaluate_filter, [last, show], detail, api_name="evaluate_filter")

    known = gr.State(names)  # per user: the variants listed so far; new ones are added ticked, as at start

    def refresh(chosen, listed):
        names = ctx.variant_names()
        ticked = [v for v in names if v in (chosen or []) or v not in listed]
        return gr.CheckboxGroup(choices=names, value=ticked), names

    return refresh, [variants, known], [variants, known]


def _read_rows(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _detail(rows: dict, how: str):
    import pandas as pd

    headers = ["qid", "question", "gold"]
    for v in rows:
        headers += [f"{v} answer", f"{v} feedback"]
    return pd.DataFrame(drilldown(rows, how), columns=headers)

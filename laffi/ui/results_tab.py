"""The Results tab: the study's committed numbers (laffi.evaluation.published), shown without running the model, so
a Space visitor sees them at once: the shipped adapters on every evaluation question against the always-"no
answer" policy, the paired differences, each article, how often their self-feedback's verdict is right, and
the learning curve once it is committed, the trials that chose the recipe on the validation article
(laffi.evaluation.study_view) and the leave-one-article-out thresholds (laffi.evaluation.thresholds_view).

Usage:  build_results_tab(results_dir) inside a gr.Blocks (read once, when the page is built: the files change
        only with a new commit).
Table cells are plain text; a file's title is shown literally (md_literal).
"""

from __future__ import annotations

import gradio as gr

from laffi.evaluation.published import (RESULTS, SHOWN, answer_paths, curve_difference_rows, curve_figure,
                                        curve_trivial_rows, difference_rows, part_rows, policy_figure, policy_rows,
                                        published, reading)
from laffi.evaluation.study_view import newest_study, study_difference_rows, trial_rows
from laffi.evaluation.thresholds_view import applied_rows, combined_rows, newest_thresholds, threshold_rows
from laffi.ui.text import md_literal

NO_RESULTS = "No study results are committed yet (results/*/summary.json)."
NO_CURVE = ("**Learning curve:** not run yet. It will show F1 against the number of training questions (250, "
            "500, 1,000, all) for SFT and LaFFi, three training seeds each, with the seeds' range as a band.")


def evaluation_note(evaluation: dict) -> str:
    articles = ", ".join(evaluation.get("articles") or [])
    partial = "" if evaluation.get("complete", True) else " (not every article is evaluated yet)"
    return (f"### {md_literal(evaluation['title'])}\n{evaluation['n']:,} SQuAD 2.0 questions of the evaluation "
            f"articles{partial}: {md_literal(articles)}. Thresholds: {md_literal(evaluation.get('thresholds', ''))}. "
            "Every score is read against the always-\"no answer\" policy (no model); [low, high] is a 95 % "
            "bootstrap interval over questions. \"best F1\" picks its threshold on these very questions, so it is "
            f"optimistic. How each answers: {md_literal(answer_paths(evaluation))}.")


THRESHOLDS_NOTE = ("### Thresholds by leave-one-article-out ({folder})\n"
                   "Each recipe's no-answer threshold chosen on the out-of-fold predictions of the {over} articles "
                   "(each scored by an adapter trained on the others) pooled with the validation article's, instead "
                   "of on the validation article alone. Whether it transfers better is read on those articles: "
                   "each at the threshold chosen on all the others (nested), against the validation article's "
                   "threshold, paired. A recipe with folds missing is provisional.")


STUDY_NOTE = ("### How the recipe was chosen ({folder})\n"
              "Each trial trains one adapter on the same training questions and scores it on {n} questions of the "
              "validation article, never the evaluation articles. F1 is at the threshold shown beside it: one chosen "
              "on these very questions is optimistic, as is \"best F1\", which picks the best threshold here for "
              "every trial alike and is the fair comparison. "
              "configs/STUDY.md says what was chosen and why.")


def build_study(results_dir) -> None:
    summary = newest_study(results_dir)
    if summary is None:
        return
    gr.Markdown(STUDY_NOTE.format(folder=md_literal(summary["folder"]), n=summary["runs"][0].get("n", "the")),
                elem_id="results-study-note")
    headers, rows = trial_rows(summary)
    gr.Dataframe(value=rows, headers=headers, datatype="str", interactive=False, wrap=True,
                 column_widths=["7%", "11%", "22%", "12%", "12%", "12%", "7%", "8%", "9%"],  # the why wraps
                 elem_id="results-study", label="Trials on the validation article (always-\"no answer\" first)")
    headers, rows = study_difference_rows(summary)
    if rows:
        gr.Dataframe(value=rows, headers=headers, datatype="str", interactive=False, wrap=True,
                     elem_id="results-study-differences", label="Each trial against SFT, paired on the same questions")


def build_thresholds(results_dir) -> None:
    summary = newest_thresholds(results_dir)
    if summary is None:
        return
    gr.Markdown(THRESHOLDS_NOTE.format(folder=md_literal(summary["folder"]),
                                       over=md_literal(summary.get("over") or "training")),
                elem_id="results-thresholds-note")
    for (headers, rows), elem, label in (
            (threshold_rows(summary), "results-thresholds", "Each recipe's threshold and how it transfers"),
            (combined_rows(summary), "results-thresholds-combined",
             "Direct and verdict no-answer scores combined, weight and threshold chosen out of fold"),
            (applied_rows(summary), "results-thresholds-applied",
             "Evaluation predictions at each threshold: F1 [95 %], HasAns F1, abstain %")):
        if rows:
            gr.Dataframe(value=rows, headers=headers, datatype="str", interactive=False, wrap=True, elem_id=elem,
                         label=label)


def build_results_tab(results_dir=RESULTS) -> None:
    evaluation, curve = published(results_dir)
    if evaluation is None:
        gr.Markdown(NO_RESULTS, elem_id="results-note")
    else:
        gr.Markdown(evaluation_note(evaluation), elem_id="results-note")
        gr.Dataframe(value=policy_rows(evaluation), headers=["policy", *(t for t, _ in SHOWN)],
                     datatype="str", interactive=False, wrap=True, elem_id="results-table",
                     column_widths=["11%", "11%", "11%", "11%", "11%", "11%", "9%", "9%", "16%"],
                     label="Policies (always-\"no answer\" first)")
        gr.Plot(policy_figure(evaluation), elem_id="results-figure", show_label=False)
        gr.Markdown(md_literal(reading(evaluation)), elem_id="results-reading")
        gr.Dataframe(value=difference_rows(evaluation),
                     headers=["comparison", "metric", "difference", "95 % interval", "reading"], datatype="str",
                     interactive=False, wrap=True, elem_id="results-differences",
                     label="Paired differences on the same questions")
        headers, rows = part_rows(evaluation)
        if rows:
            gr.Dataframe(value=rows, headers=headers, interactive=False, elem_id="results-articles",
                         label="F1 on each article")
    if curve is None:
        gr.Markdown(NO_CURVE, elem_id="results-curve-note")
    else:
        gr.Markdown(f"### {md_literal(curve.get('title', 'Learning curve'))}", elem_id="results-curve-note")
        gr.Plot(curve_figure(curve), elem_id="results-curve", show_label=False)
        if rows := curve_difference_rows(curve):
            gr.Dataframe(value=rows, headers=["training questions", "LaFFi recipe", "seeds (laffi / sft)", "metric",
                                              "laffi − sft", "95 % interval", "reading"], datatype="str",
                         interactive=False, wrap=True, elem_id="results-curve-differences",
                         label="Each LaFFi recipe against SFT at each size, paired on the same questions")
        if rows := curve_trivial_rows(curve):
            gr.Dataframe(value=rows, headers=["training questions", "method", "seeds", 'F1 − always "no answer"',
                                              "95 % interval", "reading"], datatype="str", interactive=False,
                         wrap=True, elem_id="results-curve-trivial",
                         label='Each method against always "no answer" at each size, its seeds averaged per question')
    build_study(results_dir)
    build_thresholds(results_dir)

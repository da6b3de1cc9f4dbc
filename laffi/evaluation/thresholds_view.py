"""The leave-one-article-out thresholds (laffi.pipeline.folds.fold_summary) as tables: the same rows for the
committed thresholds.md and for the app's Results view.

Usage:
    summary = newest_thresholds()                    # the newest results/<run>/thresholds.json, or None
    headers, rows = threshold_rows(summary)          # per recipe: its threshold and how it transfers
    headers, rows = combined_rows(summary)           # verify-path recipes: the combined no-answer score
    headers, rows = applied_rows(summary)            # evaluation predictions at each threshold
    text = markdown_table(headers, rows)

Every cell is plain text (the view shows it as such); a recipe whose folds are not all in says so in every row
that uses its threshold ("provisional").
"""

from __future__ import annotations

from pathlib import Path

from laffi.evaluation.published import newest_committed
from laffi.settings import REPO

FILE = "thresholds.json"


def newest_thresholds(results_dir: str | Path = REPO / "results") -> dict | None:
    """The newest results/<run>/thresholds.json with its folder's name; None when none is committed or it cannot
    be read."""
    return newest_committed(FILE, lambda summary: isinstance(summary.get("recipes"), list), results_dir)


def interval(d: dict | None) -> str:
    """'+2.0 [+0.5, +4.0]' (a paired difference in F1 points); '–' without questions to pair."""
    if not d:
        return "–"
    return f"{d['diff']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}]"


def folds_cell(recipe: dict) -> str:
    n = f"{len(recipe['folds_done'])} of {len(recipe['folds_done']) + len(recipe['folds_missing'])}"
    return f"{n} (incomplete: provisional)" if recipe["folds_missing"] else n


def scored_cell(m: dict) -> str:
    """'54.6 [47.7, 61.2], 42.6, 54 %': F1 [95 %], HasAns F1, abstain."""
    has = "–" if m.get("HasAns_f1") is None else f"{m['HasAns_f1']:.1f}"
    return f"{m['f1']:.1f} [{m['ci']['f1'][0]:.1f}, {m['ci']['f1'][1]:.1f}], {has}, {m['abstain']:.0f} %"


def threshold_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["recipe", "folds", "threshold (LOAO)", "validation article's",
               "F1 at it, each article from the others (nested)", "F1 at the validation article's",
               "difference [95 %]"]
    rows = [[f"{r['recipe']} ({r['variant']})", folds_cell(r), f"{r['threshold']:.4f}",
             f"{r['validation_threshold']:.4f}", f"{r['transfer']['loao_threshold_f1']:.1f}",
             f"{r['transfer']['validation_threshold_f1']:.1f}", interval(r["transfer"]["loao_minus_validation"])]
            for r in summary["recipes"]]
    return headers, rows


def combined_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["recipe", "folds", "verdict score", "weight", "threshold", "F1 at it (nested)",
               "direct score alone (nested)", "combined − direct [95 %]"]
    rows = [[f"{r['recipe']} ({r['variant']})", folds_cell(r), r["combined"]["rule"]["verdict"],
             f"{r['combined']['rule']['weight']:.1f}", f"{r['combined']['rule']['threshold']:.4f}",
             f"{r['combined']['transfer']['loao_threshold_f1']:.1f}", f"{r['transfer']['loao_threshold_f1']:.1f}",
             interval(r["combined"]["minus_direct"])] for r in summary["recipes"] if r.get("combined")]
    return headers, rows


def applied_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["predictions", "always \"no answer\"", "at its validation threshold", "at the LOAO threshold",
               "best on these questions (optimistic)", "LOAO − validation [95 %]"]
    rows = []
    for r in summary["recipes"]:
        late = " (provisional)" if r["folds_missing"] else ""
        for a in r["applied"]:
            rows.append([a["folder"], f"{a['own']['always_no_answer_f1']:.1f}", scored_cell(a["own"]),
                         scored_cell(a["loao"]) + late, scored_cell(a["best"]), interval(a["loao_minus_own"])])
            if "combined" in a:
                rows.append([f"{a['folder']}, combined score", "", "", scored_cell(a["combined"]) + late, "",
                             interval(a["combined_minus_loao"]) + " (combined − LOAO)"])
    return headers, rows


def markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] + ["| " + " | ".join(r) + " |"
                                                                              for r in rows]

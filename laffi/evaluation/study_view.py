"""A committed study on the validation article (laffi.pipeline.study's study.json, copied to results/<run>/) as
tables: the trials that choose a recipe, each against the always-"no answer" policy, and their paired differences.
The app's Results view shows them, so a visitor sees how the shipped recipe was chosen, not only how it scores.

Usage:
    summary = newest_study()                 # the newest results/<run>/study.json, or None
    headers, rows = trial_rows(summary)      # always "no answer" and base once, then each trial's trained run
    headers, rows = study_difference_rows(summary)

Every cell is plain text (the view shows it as such). A trial's answerability AUC and optimistic best F1 come
from its row, or, for a study.json written before rows carried them, from the trial's own results file beside it
(<trial>.json, its results.json as the study wrote it), as does the threshold each F1 was scored at.
"""

from __future__ import annotations

import json
from pathlib import Path

from laffi.evaluation.published import difference_rows, newest_committed
from laffi.evaluation.report import cell
from laffi.inference.answerability import ALWAYS_NO_ANSWER
from laffi.settings import REPO

FILE = "study.json"
TRIAL_HEADERS = ["trial", "run", "what it changes", "F1 [95 %]", "at threshold", "HasAns F1 [95 %]", "abstain %",
                 "answerability AUC", "best F1 (optimistic)"]
DIFFERENCE_HEADERS = ["comparison", "metric", "difference", "95 % interval", "reading"]
SHOWN_METRICS = {"f1": "F1", "HasAns_f1": "HasAns F1", "NoAns_exact": "NoAns EM", "abstain": "abstain %"}


def newest_study(results_dir: str | Path = REPO / "results") -> dict | None:
    """The newest results/<run>/study.json with trials in it, with its folder's name and path; None when none is
    committed or it cannot be read."""
    return newest_committed(FILE, lambda summary: isinstance(summary.get("runs"), list) and bool(summary["runs"]),
                            results_dir)


def trial_result(summary: dict, trial: str) -> dict:
    """The trial's results file beside study.json (<trial>.json); {} when it is not there."""
    try:
        result = json.loads((Path(summary["path"]) / f"{trial}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError):
        return {}
    return result if isinstance(result, dict) else {}


def with_scores(summary: dict, row: dict) -> dict:
    """The row with its AUC and best F1 (read from the trial's results file when the row lacks them) and the
    threshold its F1 was scored at."""
    if row["run"] == ALWAYS_NO_ANSWER:
        return {**row, "threshold_shown": "–"}
    result = trial_result(summary, row["trial"])
    pooled = result.get("pooled", {}).get(row["run"], {})
    variant = result.get("variants", {}).get(row["run"], {})
    if not variant:
        shown = "–"
    elif variant.get("calibrated") and variant.get("threshold") is not None:
        shown = f"{variant['threshold']:.3f} (chosen on these questions)"
    else:
        shown = "0.5 (none chosen)"
    return {**row, "auc": row.get("auc", pooled.get("auc")), "best_f1": row.get("best_f1", pooled.get("best_f1")),
            "threshold_shown": shown}


def trial_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """The always-"no answer" policy and the base model once (every trial scores the same questions), then each
    trial's trained runs, in the study's order."""
    rows, seen = [], set()
    for r in summary["runs"]:
        shared = r["run"] in (ALWAYS_NO_ANSWER, "base")
        if shared and r["run"] in seen:
            continue
        seen.add(r["run"])
        r = with_scores(summary, r)
        rows.append(["–" if shared else r["trial"], r["run"], "no model" if r["run"] == ALWAYS_NO_ANSWER else
                     ("the base model" if r["run"] == "base" else r.get("why", "")),
                     cell(r, "f1"), r["threshold_shown"], cell(r, "HasAns_f1"), cell(r, "abstain", with_ci=False),
                     cell(r, "auc"), cell(r, "best_f1", with_ci=False)])
    rows.sort(key=lambda row: (row[1] != ALWAYS_NO_ANSWER, row[1] != "base"))  # the policy first, then base
    return TRIAL_HEADERS, rows


def study_difference_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Each trial against SFT, paired on the same questions (the Results view's difference rows, metrics named
    as the trials table names them)."""
    named = [{**d, "metric": SHOWN_METRICS.get(d["metric"], d["metric"])} for d in summary.get("differences", [])]
    return DIFFERENCE_HEADERS, difference_rows({"comparisons": named})

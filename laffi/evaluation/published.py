"""The study's committed results as the app's Results view and the README show them: read from results/, no
model needed (a Space visitor sees them at once).

Usage:
    evaluation, curve = published()                  # newest pooled evaluation and learning curve, or None
    rows = policy_rows(evaluation)                   # the table, the always-"no answer" policy first
    fig = policy_figure(evaluation)                  # F1, HasAns F1, abstain rate, verdict accuracy with intervals
    fig = curve_figure(curve)                        # F1 against training questions, seeds as a band
    save_png(fig, "results/x/f1.png")                # the same figure as an image (headless Chromium)

Files (each a results/<run>/summary.json with a "kind"):
    "pooled evaluation"  laffi.evaluation.pooled.pool_folders' result without per-question values, plus title,
                         split, articles, data (name and digest) and thresholds (how they were chosen)
    "learning curve"     points: [{"method", "questions", "seed", "f1", "HasAns_f1", "auc", "abstain"}],
                         trivial_f1 (the always-"no answer" policy on the same questions), title, n, and
                         differences: [{"questions", "method", "seeds", "metric", "diff", "lo", "hi",
                         "verdict"}] (each LaFFi recipe - SFT paired on the same questions at each size),
                         against_trivial: [{"questions", "method", "seeds", "metric", "diff", "lo", "hi",
                         "verdict"}] (each method's seed mean
                         - always "no answer", F1)
Newest is by folder name (results folders start with their date).
"""

from __future__ import annotations

import json
from pathlib import Path

from laffi.evaluation.report import cell
from laffi.inference.answerability import ALWAYS_NO_ANSWER
from laffi.settings import REPO

RESULTS = REPO / "results"
EVALUATION, CURVE = "pooled evaluation", "learning curve"
# (column, key) of the Results table; the figure draws the percentages among them
SHOWN = [("F1", "f1"), ("HasAns F1", "HasAns_f1"), ("NoAns EM", "NoAns_exact"), ("abstain %", "abstain"),
         ("span HasAns F1", "span_HasAns_f1"), ("answerability AUC", "auc"), ("best F1 (optimistic)", "best_f1"),
         ("balanced verdict acc.", "balanced_verdict_accuracy")]
DRAWN = [("F1", "f1"), ("HasAns F1", "HasAns_f1"), ("abstain %", "abstain"),
         ("verdict balanced acc. (50: a coin)", "balanced_verdict_accuracy")]
VERDICT = "balanced_verdict_accuracy"


def shown_value(m: dict, key: str) -> float | None:
    """A metric as the view shows it: a verdict accuracy only where the variant's feedback gives verdicts (an
    SFT adapter's "feedback" is another answer: its 50 % would be a default, not a coin toss measured)."""
    if key == VERDICT and not m.get("verdict_parsed"):
        return None
    return m.get(key)


def read_summaries(results_dir: str | Path = RESULTS) -> list[dict]:
    """Every results/<run>/summary.json that names its kind, oldest first (a file that is not JSON is skipped:
    the view shows what it can read)."""
    found = []
    for path in sorted(Path(results_dir).glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and summary.get("kind") in (EVALUATION, CURVE):
            found.append({**summary, "folder": path.parent.name})
    return found


def newest_committed(name: str, wanted, results_dir: str | Path = RESULTS) -> dict | None:
    """The newest results/<run>/<name> (folders start with their date) that `wanted` accepts, with its folder's
    name and path; None when none is committed or none can be read (the view shows what it can read)."""
    for path in sorted(Path(results_dir).glob(f"*/{name}"), reverse=True):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and wanted(summary):
            return {**summary, "folder": path.parent.name, "path": str(path.parent)}
    return None


def published(results_dir: str | Path = RESULTS) -> tuple[dict | None, dict | None]:
    """(the newest pooled evaluation, the newest learning curve); None for a kind not committed yet."""
    newest = {}
    for summary in read_summaries(results_dir):
        newest[summary["kind"]] = summary
    return newest.get(EVALUATION), newest.get(CURVE)


def policy_rows(evaluation: dict) -> list[list[str]]:
    """One row per policy: its name, then SHOWN with intervals; always-"no answer" first (how each answers:
    answer_paths)."""
    variants = evaluation["variants"]
    order = [ALWAYS_NO_ANSWER] + [v for v in variants if v != ALWAYS_NO_ANSWER]
    return [[v, *("gives no verdict" if k == VERDICT and shown_value(variants[v], k) is None and variants[v].get(k)
               is not None else cell(variants[v], k) for _, k in SHOWN)] for v in order if v in variants]


def answer_paths(evaluation: dict) -> str:
    """'sft: likelihood ranking ...; laffi: direct': how each model policy answers."""
    return "; ".join(f"{v}: {m.get('answer_path', 'direct')}" for v, m in evaluation["variants"].items()
                     if v != ALWAYS_NO_ANSWER)


def difference_rows(evaluation: dict) -> list[list[str]]:
    """Paired differences on the same questions: comparison, metric, difference, interval, reading."""
    return [[f"{c['a']} − {c['b']}", c["metric"], f"{c['diff']:+.1f}", f"[{c['lo']:+.1f}, {c['hi']:+.1f}]",
             c["verdict"]] for c in evaluation.get("comparisons", [])]


def part_rows(evaluation: dict) -> tuple[list[str], list[list]]:
    """(headers, rows): each article's questions and every policy's F1 on it."""
    parts = evaluation.get("parts") or []
    names = [v for v in [ALWAYS_NO_ANSWER, *evaluation["variants"]] if any(v in p for p in parts)]
    names = list(dict.fromkeys(names))
    rows = [[p["name"], p["n"], *(round(p[v]["f1"], 1) if v in p and p[v].get("f1") is not None else None
                                  for v in names)] for p in parts]
    return ["article", "questions", *(f"{v} F1" for v in names)], rows


def reading(evaluation: dict) -> str:
    """A sentence per comparison of F1 (a score is read against the trivial policy and against SFT)."""
    out = []
    for c in evaluation.get("comparisons", []):
        if c["metric"] == "f1":
            out.append(f"{c['a']} − {c['b']}: F1 {c['diff']:+.1f} points [{c['lo']:+.1f}, {c['hi']:+.1f}], "
                       f"{c['verdict']}.")
    return " ".join(out)


def policy_figure(evaluation: dict):
    """Points with 95 % intervals: F1, HasAns F1, abstain rate and balanced verdict accuracy of every policy."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, *_ in policy_rows(evaluation):
        m = evaluation["variants"][name]
        keys = [(label, k) for label, k in DRAWN if shown_value(m, k) is not None]
        ci = m.get("ci") or {}
        fig.add_scatter(name=name, mode="markers", x=[label for label, _ in keys], y=[m[k] for _, k in keys],
                        marker=dict(size=11), error_y=dict(
                            type="data", symmetric=False,
                            array=[(ci[k][1] - m[k]) if k in ci else 0 for _, k in keys],
                            arrayminus=[(m[k] - ci[k][0]) if k in ci else 0 for _, k in keys]))
    fig.update_layout(scattermode="group", yaxis_title="% (95 % interval)", yaxis_range=[0, 100], height=380,
                      margin=dict(l=50, r=10, t=40, b=40),
                      title=f"SQuAD 2.0, {evaluation['n']:,} evaluation questions")
    return fig


def curve_difference_rows(curve: dict) -> list[list[str]]:
    """Each LaFFi recipe - SFT at each training size, paired on the same questions: size, recipe, seeds, metric,
    difference, interval, reading (the claim the curve is about, read from an interval rather than two lines)."""
    return [[str(d["questions"]), d.get("method", "laffi"), f"{d['seeds']['laffi']} / {d['seeds']['sft']}",
             d["metric"], f"{d['diff']:+.1f}", f"[{d['lo']:+.1f}, {d['hi']:+.1f}]", d["verdict"]]
            for d in curve.get("differences") or []]


def curve_trivial_rows(curve: dict) -> list[list[str]]:
    """Each method at each training size against the always-"no answer" policy (F1, its seeds averaged per
    question): size, method, seeds, difference, interval, reading."""
    return [[str(d["questions"]), d["method"], str(d["seeds"]), f"{d['diff']:+.1f}",
             f"[{d['lo']:+.1f}, {d['hi']:+.1f}]", d["verdict"]] for d in curve.get("against_trivial") or []]


def curve_points(curve: dict, method: str, key: str) -> list[tuple[int, float, float, float]]:
    """(training questions, mean over seeds, lowest seed, highest seed) of one method's metric, by size."""
    by_size: dict[int, list[float]] = {}
    for p in curve["points"]:
        if p["method"] == method and p.get(key) is not None:
            by_size.setdefault(p["questions"], []).append(p[key])
    return [(q, sum(v) / len(v), min(v), max(v)) for q, v in sorted(by_size.items())]


def curve_figure(curve: dict, key: str = "f1"):
    """The learning curve: each method's mean over seeds against training questions (log axis), the seeds'
    range as a band, and the always-"no answer" policy as a line."""
    import plotly.graph_objects as go

    # one colour per method for its line and its band (plotly's default cycle would give the band its own)
    colours = ("#636efa", "#ef553b", "#00cc96", "#ab63fa")
    fig, sizes = go.Figure(), set()
    for i, method in enumerate(dict.fromkeys(p["method"] for p in curve["points"])):
        pts, colour = curve_points(curve, method, key), colours[i % len(colours)]
        xs = [q for q, *_ in pts]
        sizes.update(xs)
        fig.add_scatter(x=xs + xs[::-1], y=[hi for *_, hi in pts] + [lo for _, _, lo, _ in pts][::-1],
                        mode="lines", fill="toself", fillcolor=colour, opacity=0.15, line=dict(width=0),
                        showlegend=False, hoverinfo="skip", name=f"{method} seeds")
        fig.add_scatter(x=xs, y=[mean for _, mean, _, _ in pts], mode="lines+markers", name=method,
                        line=dict(color=colour), marker=dict(color=colour))
    if key == "f1" and curve.get("trivial_f1") is not None:
        fig.add_hline(y=curve["trivial_f1"], line_dash="dot", annotation_text=ALWAYS_NO_ANSWER)
    # ticks at the sizes trained (a log axis would label 3, 4, 5 ... between them)
    ticks = sorted(q for q in sizes if q is not None)
    fig.update_layout(xaxis=dict(type="log", title="training questions", tickvals=ticks,
                                 ticktext=[f"{q:,}" for q in ticks]),
                      yaxis_title=f"{key} (mean; band: lowest to highest seed)",
                      height=380, margin=dict(l=50, r=10, t=40, b=40), title=curve.get("title", "learning curve"))
    return fig


def save_png(fig, path: str | Path, width: int = 900, height: int = 420) -> Path:
    """The figure as a PNG (for the README): drawn by plotly.js in headless Chromium (Debian's `chromium`,
    driven by Playwright from the dev requirements), so the image is the figure the app shows."""
    import shutil
    import tempfile

    from playwright.sync_api import sync_playwright

    from laffi.errors import LaffiError

    browser_path = shutil.which("chromium")
    if browser_path is None:
        raise LaffiError("Drawing figures as images needs Debian's chromium (apt-get install chromium).")
    path = Path(path)
    fig = fig.update_layout(width=width, height=height)
    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "figure.html"
        page_file.write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": width + 20, "height": height + 20})
            page.goto(page_file.as_uri())
            page.wait_for_selector(".main-svg")
            path.parent.mkdir(parents=True, exist_ok=True)
            page.locator(".plotly-graph-div").screenshot(path=str(path))
            browser.close()
    return path

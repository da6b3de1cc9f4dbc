"""Thresholds that transfer: each recipe's no-answer threshold chosen by leave-one-article-out over the training
articles plus the validation article, then applied, unchanged, to evaluation predictions.

Usage (a study file with a `folds:` section; configs/thresholds.yaml):
    python -m laffi study --config configs/thresholds.yaml               # every fold not yet run, then the summary
    python -m laffi study --config configs/thresholds.yaml --only sft-without-Huguenot   # one fold
    summary = fold_summary(study, results)                               # out/thresholds.json and thresholds.md

    folds:
      out: results/2026-12-07-thresholds   # committed: each trial's numbers (no passage text) and the summary
      over: train                          # the articles left out one at a time (the base's train_articles)
      apply: {sft: [runs/curve/all-sft-s1/eval/sft-a67351a7]}   # evaluation predictions given the threshold

Why: a threshold chosen on 200 questions of one validation article does not transfer (the curve's SFT lost
~5 F1 to it on the evaluation articles). Each trial of the study becomes itself (trained on every `over` article,
scored on the base's validation article) plus one fold per `over` article: trained on the others, scored on every
question of the one left out. Those out-of-fold predictions, pooled with the validation article's, choose one
threshold per recipe, as cross-validation chooses a hyper-parameter; the full-data adapter then serves with it.
Whether that transfers better than one article's threshold is read on validation data alone: each article's
questions at the threshold chosen on all the others (nested) against the validation article's threshold.
"""

from __future__ import annotations

from pathlib import Path

from laffi.errors import LaffiError
from laffi.io import read_jsonl

FOLD_MARK = "-without-"  # fold trial names: <trial>-without-<held-out title>
# one question as the threshold search needs it, no text: [qid, title, answerable, na_prob, span EM, span F1, span given]
RECORD_FIELDS = ("qid", "title", "has_answer", "na_prob", "span_exact", "span_f1", "answered")


def fold_trials(trials: list[dict], base: dict, folds: dict) -> list[dict]:
    """Each trial, then its folds (trial-major, so that one recipe's threshold is complete first)."""
    from laffi.squad.data import article_titles

    over = folds.get("over") or base.get("train_articles")
    if not over or (base.get("train_articles") not in (None, over)):
        raise LaffiError("folds.over must be the base's train_articles: every fold trains on all of them but one.")
    titles = article_titles(over)
    if len(titles) < 2:
        raise LaffiError("folds.over must name at least two articles: each fold leaves one out.")
    if base.get("eval_articles") in (None, over) or set(article_titles(base["eval_articles"])) & set(titles):
        raise LaffiError("The base's eval_articles must be the validation article(s), outside folds.over: the "
                         "full-data adapter is scored there.")
    out = []
    for t in trials:
        if t.get("name") == "base":
            raise LaffiError("A folds study names its base model's row 'base': give the trial another name.")
        if len(t.get("methods") or base.get("methods") or []) != 1:
            raise LaffiError(f"Trial {t.get('name')!r} of a folds study must train one method (methods: [sft] or "
                             "[laffi]): a threshold belongs to one recipe.")
        out.append(t)
        for title in titles:
            out.append({**t, "name": f"{t['name']}{FOLD_MARK}{title}", "why": f"{t.get('why', '')} (without {title})",
                        "train_articles": ",".join(x for x in titles if x != title), "eval_articles": title,
                        "eval_limit": None, "calibrate_articles": None})
    return out


def answer_records(rows: list[dict], where: Path) -> list[list]:
    """One variant's evaluated questions (the rows of <eval>/<variant>/examples.jsonl, read from `where`) as
    RECORD_FIELDS rows: its span scored against the gold answers, whatever threshold it was shown with."""
    from laffi.squad.metric import score_one

    out = []
    for r in rows:
        # without a span (the base model) its direct answer before any threshold: "prediction", which the
        # evaluation's span metrics fall back to, is already "" where the old threshold abstained
        span = r.get("span") if r.get("span") is not None else r.get("direct", "")
        if r.get("na_prob") is None:
            raise LaffiError(f"{where} has no no-answer probabilities: it cannot choose a threshold.")
        em, f1 = score_one(tuple(r["gold_answers"]), span)
        out.append([r["qid"], r.get("title", ""), int(bool(r["gold_answers"])), float(r["na_prob"]), int(em),
                    round(float(f1), 4), int(bool(span))])
    return out


def best_threshold(records: list[list]) -> float:
    """The official search (laffi.squad.metric.find_best_thresh) over records."""
    from laffi.squad.metric import find_best_thresh

    preds = {r[0]: "x" if r[6] else "" for r in records}
    return find_best_thresh(preds, {r[0]: r[5] for r in records}, {r[0]: r[3] for r in records},
                            {r[0]: bool(r[2]) for r in records})[1]


def per_question(records: list[list], threshold: float) -> dict[str, list[float]]:
    """Each question's F1 and abstention at `threshold` by the official rule (laffi.squad.metric), and whether it
    is answerable."""
    from laffi.squad.metric import apply_no_ans_threshold

    f1 = apply_no_ans_threshold({r[0]: r[5] for r in records}, {r[0]: r[3] for r in records},
                                {r[0]: bool(r[2]) for r in records}, threshold)
    return {"f1": [f1[r[0]] for r in records], "abstain": [float(r[3] > threshold) for r in records],
            "has_answer": [bool(r[2]) for r in records]}


def scored(records: list[list], threshold: float) -> dict:
    """F1, HasAns F1 and abstain % at `threshold` with 95 % bootstrap intervals, and always "no answer"'s F1."""
    from laffi.evaluation.stats import with_ci

    q = per_question(records, threshold)
    has = [f for f, h in zip(q["f1"], q["has_answer"]) if h]
    parts = {"f1": with_ci(q["f1"]), "HasAns_f1": with_ci(has) if has else None, "abstain": with_ci(q["abstain"])}
    return {"n": len(records), "threshold": round(threshold, 6),
            **{k: (v or {}).get("mean") for k, v in parts.items()},
            "ci": {k: [v["lo"], v["hi"]] for k, v in parts.items() if v}, "always_no_answer_f1":
                round(100.0 * sum(1 for r in records if not r[2]) / max(len(records), 1), 2)}


def transfer(folds: dict[str, list[list]], validation: list[list]) -> dict:
    """On validation data alone: every fold article's questions at (a) the validation article's threshold, (b)
    the threshold chosen on every other article (nested leave-one-article-out, the validation article included),
    (c) its own best (optimistic); pooled over the articles, with (b) - (a) as a paired interval."""
    from laffi.evaluation.stats import paired_diff_ci

    one = best_threshold(validation)
    rows, a, b = [], [], []
    for title, recs in folds.items():
        others = [r for t, rs in folds.items() if t != title for r in rs] + validation
        nested = best_threshold(others)
        qa, qb = per_question(recs, one)["f1"], per_question(recs, nested)["f1"]
        rows.append({"article": title, "n": len(recs), "validation_threshold_f1": round(100 * sum(qa) / len(qa), 2),
                     "loao_threshold_f1": round(100 * sum(qb) / len(qb), 2),
                     "best_f1": round(100 * sum(per_question(recs, best_threshold(recs))["f1"]) / len(recs), 2)})
        a += qa
        b += qb
    diff, lo, hi = (100 * x for x in paired_diff_ci(b, a)) if a else (None, None, None)
    return {"articles": rows, "n": len(a), "validation_threshold": round(one, 6), "validation_threshold_f1": round(100 * sum(a) / max(len(a), 1), 2),
            "loao_threshold_f1": round(100 * sum(b) / max(len(b), 1), 2),
            "loao_minus_validation": None if diff is None else {"diff": round(diff, 2), "ci": [round(lo, 2), round(hi, 2)]}}


def committed(stages, trial: dict, result: dict) -> dict:
    """What a folds study commits of a finished trial: its results.json plus every variant's RECORD_FIELDS rows
    (numbers, SQuAD ids and titles only: never a passage, question or answer)."""
    from laffi.inference.answerability import ALWAYS_NO_ANSWER

    eval_dir = stages.out / trial["name"] / "eval"  # only this result's variants: an older adapter's folder may linger
    return {**result, "answerability": {v: answer_records(read_jsonl(eval_dir / v / "examples.jsonl"), eval_dir / v)
                                        for v in result["variants"] if v != ALWAYS_NO_ANSWER}}


def applied_records(folder: str, out: Path) -> tuple[list[list], float | None] | None:
    """(records, the threshold they were shown with) of an evaluation folder named in folds.apply; kept under
    out/applied/ the first time it is read, so that a machine without runs/ still has them. None when neither
    is there."""
    import json

    from laffi.io import write_json_atomic

    keep = out / "applied" / (folder.strip("/").replace("/", "__") + ".json")
    if (Path(folder) / "examples.jsonl").is_file():
        rows = read_jsonl(Path(folder) / "examples.jsonl")
        kept = {"folder": folder, "threshold": rows[0].get("threshold") if rows else None,
                "records": answer_records(rows, Path(folder))}
        write_json_atomic(keep, kept)
    elif keep.is_file():
        kept = json.loads(keep.read_text(encoding="utf-8"))
    else:
        return None
    return kept["records"], kept["threshold"]


def recipe_variant(result: dict) -> str:
    """The one trained variant of a folds-study trial (its adapter's name)."""
    names = [n for names in (result.get("seeds") or {}).values() for n in names]
    if len(names) != 1:
        raise LaffiError("A folds-study trial trains one adapter (one method, one seed).")
    return names[0]


def fold_summary(trials: list[dict], results: dict[str, dict], folds: dict, log=lambda m: None) -> dict:
    """Per recipe (each trial of the study file, and the base model): the leave-one-article-out threshold, how it
    transfers on validation data (transfer()), and the F1 of folds.apply's evaluation predictions at the
    threshold they were evaluated with, at this one, and at their own best (optimistic)."""
    from laffi.evaluation.stats import paired_diff_ci
    from laffi.inference.answerability import DEFAULT_THRESHOLD

    recipes = [t for t in trials if FOLD_MARK not in t["name"]]
    # (row label, the trial whose folds it reads, its variant there): every recipe, then the untrained base model,
    # whose answers every fold scored too
    rows = [(t["name"], t, recipe_variant) for t in recipes] + [("base", recipes[0], lambda r: "base")] * bool(recipes)
    out = []
    for label, t, pick in rows:
        full = results.get(t["name"])
        fold_names = [f["name"] for f in trials if f["name"].startswith(t["name"] + FOLD_MARK)]
        done = {n.split(FOLD_MARK, 1)[1]: results[n] for n in fold_names if n in results}
        if full is None or not done:
            continue
        validation = full["answerability"][pick(full)]
        by_article = {title: r["answerability"][pick(r)] for title, r in done.items()}
        pool = [x for recs in by_article.values() for x in recs] + validation
        loao, moved = best_threshold(pool), transfer(by_article, validation)
        row = {"recipe": label, "variant": pick(full), "why": t.get("why", "") if label != "base" else "the base model",
               "folds_done": sorted(done), "folds_missing": sorted(n.split(FOLD_MARK, 1)[1] for n in fold_names
                                                                    if n not in results),
               "threshold": round(loao, 6), "validation_threshold": moved["validation_threshold"],
               "pool": scored(pool, loao), "transfer": moved, "applied": []}
        for folder in (folds.get("apply") or {}).get(label, []):
            found = applied_records(folder, Path(folds["out"]))
            if found is None:
                log(f"study: {folder} is not on this machine (nor kept in {folds['out']}/applied): not applied")
                continue
            records, own = found
            own = DEFAULT_THRESHOLD if own is None else own  # shown without a calibration: the default applied
            at_own, at_loao = per_question(records, own), per_question(records, loao)
            diff, lo, hi = (100 * x for x in paired_diff_ci(at_loao["f1"], at_own["f1"]))
            row["applied"].append({"folder": folder, "own": scored(records, own),
                                   "loao": scored(records, loao), "best": scored(records, best_threshold(records)),
                                   "loao_minus_own": {"diff": round(diff, 2), "ci": [round(lo, 2), round(hi, 2)]}})
        out.append(row)
    return {"over": folds.get("over"), "recipes": out}


def fold_markdown(summary: dict) -> str:
    """thresholds.md: one table of thresholds and their transfer on validation data, one of applied predictions."""
    lines = ["# Thresholds by leave-one-article-out", "",
             "| recipe | folds | threshold (LOAO) | validation article's | F1 at it, each article from the others "
             "(nested) | F1 at the validation article's | difference [95 %] |", "|---|---|---|---|---|---|---|"]
    for r in summary["recipes"]:
        tr = r["transfer"]
        d = tr["loao_minus_validation"] or {"diff": 0.0, "ci": [0.0, 0.0]}
        lines.append(f"| {r['recipe']} ({r['variant']}) | {len(r['folds_done'])} of "
                     f"{len(r['folds_done']) + len(r['folds_missing'])} | {r['threshold']:.4f} | "
                     f"{r['validation_threshold']:.4f} | {tr['loao_threshold_f1']:.1f} | "
                     f"{tr['validation_threshold_f1']:.1f} | {d['diff']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] |")
    applied = [(r, a) for r in summary["recipes"] for a in r["applied"]]
    if applied:
        lines += ["", "Evaluation predictions at each threshold (F1 [95 %], HasAns F1, abstain %):", "",
                  "| predictions | always \"no answer\" | at its validation threshold | at the LOAO threshold | "
                  "best on these questions (optimistic) | LOAO − validation [95 %] |", "|---|---|---|---|---|---|"]

        def cell(m):
            return (f"{m['f1']:.1f} [{m['ci']['f1'][0]:.1f}, {m['ci']['f1'][1]:.1f}], {m['HasAns_f1']:.1f}, "
                    f"{m['abstain']:.0f} %")

        for r, a in applied:
            d = a["loao_minus_own"]
            lines.append(f"| {a['folder']} | {a['own']['always_no_answer_f1']:.1f} | {cell(a['own'])} | "
                         f"{cell(a['loao'])} | {cell(a['best'])} | {d['diff']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] |")
    return "\n".join(lines) + "\n"

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

A LaFFi recipe evaluated on the verify path (laffi_answer_path kind 'verify') has two no-answer scores per
question: its direct reply's P(abstain) and its verdict's on its own span (1 - P(Correct | span), or the
contrast with P(Correct | "no answer")). The combined score w * direct + (1 - w) * verdict, as Retro-Reader sums
its verifier's and reader's scores, has its weight, verdict kind and threshold chosen together out of fold, and
is read against the direct score alone at nested thresholds on the same questions.
"""

from __future__ import annotations

from pathlib import Path

from laffi.errors import LaffiError
from laffi.io import read_jsonl

FOLD_MARK = "-without-"  # fold trial names: <trial>-without-<held-out title>
# one question as the threshold search needs it, no text: [qid, title, answerable, na_prob, span EM, span F1, span
# given]; na_prob is the direct reply's P(abstain) (for the base and direct variants the only one)
RECORD_FIELDS = ("qid", "title", "has_answer", "na_prob", "span_exact", "span_f1", "answered")
# a verify-path variant's records go on with its verdict's no-answer scores (laffi.inference.answerability)
VERDICT_KINDS = ("span", "contrast")
# the direct score's share in the combined one, from 1 (direct alone) to 0 (verdict alone): among equal F1s the
# search keeps the first, the one closest to the direct score alone (the simpler rule)
WEIGHTS = tuple(i / 10 for i in range(10, -1, -1))
# what a fold trial sets itself: a trial that set them too would not be leaving one article out
FOLD_SETS = ("data", "train_articles", "train_limit", "eval_articles", "eval_limit", "calibrate_articles", "seed",
             "seeds")


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
        if set(t) & set(FOLD_SETS):
            raise LaffiError(f"Trial {t.get('name')!r} of a folds study sets {', '.join(sorted(set(t) & set(FOLD_SETS)))}"
                             ": the folds choose its articles, and its data and seed are the base's.")
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
    from laffi.evaluation.evaluate import row_span
    from laffi.inference.selffeedback import candidates_na_prob
    from laffi.squad.metric import score_one

    out = []
    for r in rows:
        # without a span (the base model) its direct answer before any threshold: "prediction", which the
        # evaluation's span metrics fall back to, is already "" where the old threshold abstained
        span = row_span(r)
        if r.get("na_prob") is None:
            raise LaffiError(f"{where} has no no-answer probabilities: it cannot choose a threshold.")
        verdicts = r.get("path_kind") == "verify"
        if verdicts and (r.get("direct_na_prob") is None or not r.get("candidates")):
            raise LaffiError(f"{where} was evaluated on the verify path before its direct scores were recorded: "
                             "evaluate it again to choose its threshold here.")
        em, f1 = score_one(tuple(r["gold_answers"]), span)
        out.append([r["qid"], r.get("title", ""), int(bool(r["gold_answers"])),
                    float(r["direct_na_prob"] if verdicts else r["na_prob"]), int(em), round(float(f1), 4),
                    int(bool(span))] + ([candidates_na_prob(r["candidates"], k) for k in VERDICT_KINDS] if verdicts else []))
    return out


def best_f1_threshold(records: list[list]) -> tuple[float, float]:
    """(best F1, its threshold) by the official search (laffi.squad.metric.find_best_thresh) over records."""
    from laffi.squad.metric import find_best_thresh

    preds = {r[0]: "x" if r[6] else "" for r in records}
    return find_best_thresh(preds, {r[0]: r[5] for r in records}, {r[0]: r[3] for r in records},
                            {r[0]: bool(r[2]) for r in records})


def best_threshold(records: list[list]) -> float:
    """The official search's threshold over records."""
    return best_f1_threshold(records)[1]


def has_verdicts(records: list[list]) -> bool:
    """Whether every record carries its verdict's no-answer scores (a verify-path variant)."""
    return bool(records) and all(len(r) == len(RECORD_FIELDS) + len(VERDICT_KINDS) for r in records)


def combined(records: list[list], rule: dict) -> list[list]:
    """The records with na_prob = weight * direct + (1 - weight) * the rule's verdict score (a rule without a
    verdict: the records as they are)."""
    if "verdict" not in rule:
        return records
    k, w = len(RECORD_FIELDS) + VERDICT_KINDS.index(rule["verdict"]), rule["weight"]
    return [[*r[:3], w * r[3] + (1 - w) * r[k], *r[4:len(RECORD_FIELDS)]] for r in records]


def best_rule(records: list[list], combine: bool = False) -> dict:
    """The threshold (and, combining, the verdict kind and weight) with the best F1 on records; among equal F1s
    the first in WEIGHTS x VERDICT_KINDS order."""
    if not combine:
        return {"threshold": best_threshold(records)}
    best = None
    for w in WEIGHTS:
        for verdict in VERDICT_KINDS:
            rule = {"verdict": verdict, "weight": w}
            f1, t = best_f1_threshold(combined(records, rule))
            if best is None or f1 > best[0] + 1e-9:
                best = (f1, {**rule, "threshold": t})
    return best[1]


def at_rule(records: list[list], rule: dict) -> dict[str, list[float]]:
    """per_question() of records scored by a rule."""
    return per_question(combined(records, rule), rule["threshold"])


def per_question(records: list[list], threshold: float) -> dict[str, list[float]]:
    """Each question's F1 and abstention at `threshold` by the official rule (laffi.squad.metric), and whether it
    is answerable."""
    from laffi.squad.metric import apply_no_ans_threshold

    f1 = apply_no_ans_threshold({r[0]: r[5] for r in records}, {r[0]: r[3] for r in records},
                                {r[0]: bool(r[2]) for r in records}, threshold)
    return {"f1": [f1[r[0]] for r in records], "abstain": [float(r[3] > threshold) for r in records],
            "has_answer": [bool(r[2]) for r in records]}


def scored(records: list[list], threshold: float | dict) -> dict:
    """F1, HasAns F1 and abstain % at `threshold` (or a rule: best_rule) with 95 % bootstrap intervals, and
    always "no answer"'s F1."""
    from laffi.evaluation.stats import with_ci

    rule = threshold if isinstance(threshold, dict) else {"threshold": threshold}
    threshold = rule["threshold"]
    q = at_rule(records, rule)
    has = [f for f, h in zip(q["f1"], q["has_answer"]) if h]
    parts = {"f1": with_ci(q["f1"]), "HasAns_f1": with_ci(has) if has else None, "abstain": with_ci(q["abstain"])}
    return {"n": len(records), "threshold": threshold,
            **{k: (v or {}).get("mean") for k, v in parts.items()},
            "ci": {k: [v["lo"], v["hi"]] for k, v in parts.items() if v}, "always_no_answer_f1":
                round(100.0 * sum(1 for r in records if not r[2]) / max(len(records), 1), 2)}


def nested(folds: dict[str, list[list]], validation: list[list], combine: bool = False) -> tuple[dict, list, list, list]:
    """Each fold article's questions at (a) the rule chosen on the validation article and (b) the rule chosen on
    every other article, the validation article included (nested leave-one-article-out): (the validation rule,
    a's per-question F1s, b's, one row per article with its own best too, optimistic), articles in `folds` order."""
    one = best_rule(validation, combine)
    rows, a, b = [], [], []
    for title, recs in folds.items():
        others = [r for t, rs in folds.items() if t != title for r in rs] + validation
        rule = best_rule(others, combine)
        qa, qb = at_rule(recs, one)["f1"], at_rule(recs, rule)["f1"]
        rows.append({"article": title, "n": len(recs), "loao_threshold": rule["threshold"],
                     "validation_threshold_f1": round(100 * sum(qa) / len(qa), 2),
                     "loao_threshold_f1": round(100 * sum(qb) / len(qb), 2),
                     "best_f1": round(100 * sum(at_rule(recs, best_rule(recs, combine))["f1"]) / len(recs), 2)})
        a += qa
        b += qb
    return one, a, b, rows


def paired(b: list[float], a: list[float]) -> dict | None:
    """b - a in F1 points with its paired 95 % interval (None without questions)."""
    from laffi.evaluation.stats import paired_diff_ci

    if not a:
        return None
    diff, lo, hi = (100 * x for x in paired_diff_ci(b, a))
    return {"diff": round(diff, 2), "ci": [round(lo, 2), round(hi, 2)]}


def transfer_of(one: dict, a: list[float], b: list[float], rows: list[dict]) -> dict:
    """A nested() result pooled over the articles, with (b) - (a) as a paired interval."""
    return {"articles": rows, "n": len(a), "validation_threshold": one["threshold"],
            **({"validation_rule": one} if "verdict" in one else {}),
            "validation_threshold_f1": round(100 * sum(a) / max(len(a), 1), 2),
            "loao_threshold_f1": round(100 * sum(b) / max(len(b), 1), 2), "loao_minus_validation": paired(b, a)}


def transfer(folds: dict[str, list[list]], validation: list[list], combine: bool = False) -> dict:
    """On validation data alone (nested()): every fold article at the validation article's rule and at the rule
    of all the others, pooled over the articles."""
    return transfer_of(*nested(folds, validation, combine))


def combined_row(by_article: dict[str, list[list]], validation: list[list], pool: list[list],
                 direct: list[float]) -> dict | None:
    """A verify-path recipe's combined score: its rule chosen on the pool, its transfer, and its nested F1
    against `direct` (the direct score's nested per-question F1s, nested()) on the same questions (None without
    verdicts)."""
    if not has_verdicts(pool):
        return None
    rule = best_rule(pool, combine=True)
    mixed = nested(by_article, validation, combine=True)
    return {"rule": rule, "pool": scored(pool, rule), "transfer": transfer_of(*mixed),
            "minus_direct": paired(mixed[2], direct)}


def committed(stages, trial: dict, result: dict) -> dict:
    """What a folds study commits of a finished trial: its results.json plus every variant's RECORD_FIELDS rows
    (numbers, SQuAD ids and titles only: never a passage, question or answer)."""
    from laffi.inference.answerability import ALWAYS_NO_ANSWER

    eval_dir = stages.out / trial["name"] / "eval"  # only this result's variants: an older adapter's folder may linger
    return {**result, "answerability": {v: answer_records(read_jsonl(eval_dir / v / "examples.jsonl"), eval_dir / v)
                                        for v in result["variants"] if v != ALWAYS_NO_ANSWER}}


def shown_by(rows: list[dict]) -> str | None:
    """Which verdict score (VERDICT_KINDS) a verify-path folder's shown na_prob is, so its own threshold is read on
    that scale (None: a direct score, P(abstain))."""
    from laffi.inference.selffeedback import candidates_na_prob

    if not rows or rows[0].get("path_kind") != "verify":
        return None
    for kind in VERDICT_KINDS:
        if all(abs(candidates_na_prob(r["candidates"], kind) - float(r["na_prob"])) < 1e-6 for r in rows):
            return kind
    raise LaffiError("A verify-path evaluation's no-answer scores match none of its verdict scores: evaluate it "
                     "again.")


def applied_records(folder: str, out: Path) -> tuple[list[list], dict] | None:
    """(records, the rule they were shown with: their threshold, on their verdict's scale for a verify-path
    folder) of an evaluation folder named in folds.apply; kept under out/applied/ the first time it is read, so
    that a machine without runs/ still has them. None when neither is there."""
    import json

    from laffi.inference.answerability import DEFAULT_THRESHOLD
    from laffi.io import write_json_atomic

    keep = out / "applied" / (folder.strip("/").replace("/", "__") + ".json")
    if (Path(folder) / "examples.jsonl").is_file():
        rows = read_jsonl(Path(folder) / "examples.jsonl")
        kept = {"folder": folder, "threshold": rows[0].get("threshold") if rows else None,
                "records": answer_records(rows, Path(folder))}
        if kind := shown_by(rows):
            kept["shown_by"] = kind
        write_json_atomic(keep, kept)
    elif keep.is_file():
        kept = json.loads(keep.read_text(encoding="utf-8"))
    else:
        return None
    own = DEFAULT_THRESHOLD if kept["threshold"] is None else kept["threshold"]  # uncalibrated: the default shown
    rule = {"verdict": kept["shown_by"], "weight": 0.0, "threshold": own} if kept.get("shown_by") else {"threshold": own}
    return kept["records"], rule


def recipe_variant(result: dict) -> str:
    """The one trained variant of a folds-study trial (its adapter's name)."""
    names = [n for names in (result.get("seeds") or {}).values() for n in names]
    if len(names) != 1:
        raise LaffiError("A folds-study trial trains one adapter (one method, one seed).")
    return names[0]


def fold_summary(trials: list[dict], results: dict[str, dict], folds: dict, log=lambda m: None) -> dict:
    """Per recipe (each trial of the study file, and the base model): the leave-one-article-out threshold, how it
    transfers on validation data (nested()), a verify-path recipe's combined score (combined_row), and the F1 of
    folds.apply's evaluation predictions at the threshold they were evaluated with, at this one (and the combined
    rule's), and at their own best (optimistic). A recipe whose folds are not all done is marked incomplete."""
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
        direct = nested(by_article, validation)
        loao, moved = best_threshold(pool), transfer_of(*direct)
        missing = sorted(n.split(FOLD_MARK, 1)[1] for n in fold_names if n not in results)
        row = {"recipe": label, "variant": pick(full), "why": t.get("why", "") if label != "base" else "the base model",
               "folds_done": sorted(done), "folds_missing": missing, "complete": not missing,
               "threshold": loao, "validation_threshold": moved["validation_threshold"],
               "pool": scored(pool, loao), "transfer": moved, "combined": combined_row(by_article, validation, pool, direct[2]),
               "applied": []}
        for folder in (folds.get("apply") or {}).get(label, []):
            found = applied_records(folder, Path(folds["out"]))
            if found is None:
                log(f"study: {folder} is not on this machine (nor kept in {folds['out']}/applied): not applied")
                continue
            records, own = found
            at_loao = per_question(records, loao)["f1"]
            applied = {"folder": folder, "own": scored(records, own), "loao": scored(records, loao),
                       "best": scored(records, best_threshold(records)),
                       "loao_minus_own": paired(at_loao, at_rule(records, own)["f1"])}
            if row["combined"] and has_verdicts(records):
                rule = row["combined"]["rule"]
                applied.update(combined=scored(records, rule),
                               combined_minus_loao=paired(at_rule(records, rule)["f1"], at_loao))
            row["applied"].append(applied)
        out.append(row)
    return {"over": folds.get("over"), "recipes": out}


def fold_markdown(summary: dict) -> str:
    """thresholds.md: thresholds and their transfer on validation data, the combined scores, applied predictions
    (laffi.evaluation.thresholds_view: the Results view's rows)."""
    from laffi.evaluation.thresholds_view import applied_rows, combined_rows, markdown_table, threshold_rows

    lines = ["# Thresholds by leave-one-article-out", "", *markdown_table(*threshold_rows(summary))]
    headers, rows = combined_rows(summary)
    if rows:
        lines += ["", "Combined no-answer score, weight x direct P(abstain) + (1 - weight) x its verdict's, chosen "
                  "out of fold with its threshold (nested F1 over the fold articles):", "",
                  *markdown_table(headers, rows)]
    headers, rows = applied_rows(summary)
    if rows:
        lines += ["", "Evaluation predictions at each threshold (F1 [95 %], HasAns F1, abstain %):", "",
                  *markdown_table(headers, rows)]
    return "\n".join(lines) + "\n"

"""Results as tables people can read: every headline number with its 95 % interval, abstaining beside F1, and
differences between variants judged by paired bootstrap intervals.

Usage:
    print(results_table(result))                       # Markdown: one row per variant (from evaluate_variants)
    print(text_table(result))                          # the same, aligned for a terminal
    rows = compare(per_question, "laffi", "sft")        # paired differences on the same questions

A score that rises by abstaining is not a gain, so the abstain rate and NoAns EM always stand next to F1, HasAns
F1 (answerable questions only) next to both, and the always-"no answer" row (no model at all) above them all.
"""

from __future__ import annotations

from laffi.evaluation.stats import paired_diff_ci, verdict
from laffi.inference.answerability import ALWAYS_NO_ANSWER

# (column title, metric key): the README's results table, the CLI and the Evaluate tab all use these.
# F1 is at the variant's own threshold (chosen on validation); "best F1" is the official best threshold on the
# scored questions themselves, so it is optimistic and labelled so.
COLUMNS = [("EM", "exact"), ("F1", "f1"), ("HasAns F1", "HasAns_f1"), ("NoAns EM", "NoAns_exact"),
           ("abstain %", "abstain"), ("span HasAns F1", "span_HasAns_f1"), ("answerability AUC", "auc"),
           ("best F1 (optimistic)", "best_f1"), ("direct F1", "direct_f1"), ("F1 via feedback", "revised_f1"),
           ("HasAns F1 via feedback", "revised_HasAns_f1"), ("balanced verdict acc.", "balanced_verdict_accuracy")]


UNIT_KEYS = ("auc",)


def cell(m: dict, key: str, with_ci: bool = True) -> str:
    """'48.2 [44.0, 52.5]' (value and 95 % interval), '48.2' without one, '–' when not measured."""
    value = m.get(key)
    if value is None:
        return "–"
    if key in UNIT_KEYS:  # a 0-1 quantity, not a percentage
        return f"{value:.3f}"
    ci = (m.get("ci") or {}).get(key)
    return f"{value:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if with_ci and ci else f"{value:.1f}"


def _columns(result: dict) -> list[tuple[str, str]]:
    present = {k for m in result["variants"].values() for k, v in m.items() if v is not None}
    return [(t, k) for t, k in COLUMNS if k in present]


def results_table(result: dict, with_ci: bool = True) -> str:
    cols = _columns(result)
    lines = ["| variant | answer | " + " | ".join(t for t, _ in cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for v, m in result["variants"].items():
        lines.append(f"| {v} | {m.get('answer_path', 'direct')} | "
                     + " | ".join(cell(m, k, with_ci) for _, k in cols) + " |")
    return ("\n".join(lines) + f"\n\nn = {result['n']} questions; [low, high] = 95 % bootstrap interval over "
            "questions.\n")


def text_table(result: dict) -> str:
    """The same numbers aligned in columns for a terminal (each column as wide as its widest cell)."""
    cols = _columns(result)
    header = ["variant", *(t for t, _ in cols)]
    body = [[v, *(cell(m, k) for _, k in cols)] for v, m in result["variants"].items()]
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]
    fmt = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                for i, (c, w) in enumerate(zip(row, widths)))
    paths = "; ".join(f"{v}: {m.get('answer_path', 'direct')}" for v, m in result["variants"].items())
    return "\n".join([fmt(header), *map(fmt, body), f"(n={result['n']}; answers: {paths})"])


# Abstaining more is not better in itself (a score can rise by abstaining): its difference is only "more"/"fewer".
NEUTRAL = {"abstain": ("abstains more", "abstains less"), "revised_abstain": ("abstains more", "abstains less")}


def compare(per_question: dict[str, dict[str, list[float]]], a: str, b: str,
            keys=("f1", "HasAns_f1", "NoAns_exact", "abstain")) -> list[dict]:
    """Paired differences a - b (in points) on the same questions, with 95 % intervals and a plain verdict."""
    rows = []
    for key in keys:
        xa, xb = per_question[a].get(key), per_question[b].get(key)
        if not xa or not xb:
            continue
        diff, lo, hi = paired_diff_ci(xa, xb)
        rows.append({"metric": key, "diff": round(100 * diff, 2), "lo": round(100 * lo, 2),
                     "hi": round(100 * hi, 2),
                     "verdict": verdict(diff, lo, hi, NEUTRAL.get(key, ("better", "worse")))})
    return rows


def comparisons(per_question: dict[str, dict[str, list[float]]], variants: list[str],
                pairs: list[tuple[str, str]]) -> list[dict]:
    """Paired differences: each pair (a, b) asked for, then every variant against the always-'no answer' policy
    (F1: a score is read against the policy that needs no model)."""
    rows = []
    for a, b in pairs:
        rows += [{"a": a, "b": b, **row} for row in compare(per_question, a, b)]
    for v in variants:
        rows += [{"a": v, "b": ALWAYS_NO_ANSWER, **row}
                 for row in compare(per_question, v, ALWAYS_NO_ANSWER, keys=("f1",))]
    return rows


POOLED_KEYS = ("exact", "f1", "HasAns_f1", "NoAns_exact", "abstain", "span_HasAns_f1", "direct_f1", "direct_HasAns_f1",
               "revised_f1", "revised_HasAns_f1", "revised_NoAns_exact", "revised_abstain")
SEED_MEAN_KEYS = ("balanced_verdict_accuracy", "verdict_agreement", "drafts_right", "auc", "best_f1")
COMPARED = ("f1", "HasAns_f1", "NoAns_exact", "abstain")


def pooled_result(result: dict, named: dict[str, list[str]]) -> dict:
    """Rows for reporting from evaluate_variants' result: each named run (e.g. "sft": ["sft", "sft-seed1"]) pooled
    over its seeds - every question's score averaged over seeds, then the mean and its bootstrap interval - plus
    the base model, every seed's own row, and paired differences on the same questions: the second run minus the
    first (laffi - sft) when there are two, and each run minus the base."""
    from laffi.evaluation.stats import bootstrap_ci, seed_mean

    per_q, rows = result["per_question"], {}
    trivial = [ALWAYS_NO_ANSWER] if ALWAYS_NO_ANSWER in per_q else []
    groups = {**{t: [t] for t in trivial}, "base": ["base"], **named}
    pooled_values = {}
    for name, variants in groups.items():
        first = result["variants"][variants[0]]
        m = {"answer_path": first.get("answer_path"), "seeds": len(variants), "ci": {}}
        pooled_values[name] = {}
        for key in POOLED_KEYS:
            if all(key in per_q[v] and per_q[v][key] for v in variants):
                values = seed_mean([per_q[v][key] for v in variants])
                pooled_values[name][key] = values
                mean, lo, hi = bootstrap_ci(values)
                m[key], m["ci"][key] = 100 * mean, [round(100 * lo, 2), round(100 * hi, 2)]
        for key in SEED_MEAN_KEYS:
            got = [result["variants"][v].get(key) for v in variants]
            if all(g is not None for g in got):
                m[key] = sum(got) / len(got)
                if len(got) > 1:
                    m["ci"][key] = [round(min(got), 2), round(max(got), 2)]  # the range over seeds
        rows[name] = m
    comparisons = []
    names = list(named)  # in method order: sft first, then laffi
    pairs = ([(names[-1], names[0])] if len(names) == 2 else []) + [(n, "base") for n in names] + [
        (n, t) for t in trivial for n in names]
    for a, b in pairs:
        for row in compare(pooled_values, a, b, keys=("f1",) if b in trivial else COMPARED):
            comparisons.append({"a": a, "b": b, **row})
    out = {"n": result["n"], "pooled": rows, "variants": result["variants"], "seeds": named,
           "comparisons": comparisons}
    if result.get("qids") and result.get("has_answer"):
        out["questions"] = question_record(result, pooled_values)
    return out


def question_record(result: dict, pooled_values: dict) -> dict:
    """Every pooled run's score on each question, small enough to commit beside its numbers: so paired
    differences between runs of different trials (LaFFi against SFT at each point of a curve) can be computed
    again later, when the runs' folders are long gone. F1 and abstaining over all questions carry the rest: on an
    unanswerable question F1 and EM are both "it abstained"."""
    return {"qids": list(result["qids"]), "has_answer": [int(h) for h in result["has_answer"]],
            "runs": {name: {k: [round(x, 4) for x in values[k]] for k in ("f1", "abstain")}
                     for name, values in pooled_values.items() if "f1" in values and "abstain" in values}}


def question_scores(questions: dict, run: str, qids: list[str]) -> dict[str, list[float]]:
    """One run's per-question values (as compare takes them) on `qids`, from a question_record."""
    at = {q: i for i, q in enumerate(questions["qids"])}
    f1, abstain = questions["runs"][run]["f1"], questions["runs"][run]["abstain"]
    rows = [at[q] for q in qids]
    has = [i for i in rows if questions["has_answer"][i]]
    no = [i for i in rows if not questions["has_answer"][i]]
    return {"f1": [f1[i] for i in rows], "HasAns_f1": [f1[i] for i in has], "NoAns_exact": [f1[i] for i in no],
            "abstain": [abstain[i] for i in rows]}


def results_markdown(pooled: dict) -> str:
    """results.md: the pooled table (seed-averaged, 95 % intervals), per-seed rows, and the paired differences."""
    out = ["## Pooled over training seeds", "", results_table({"n": pooled["n"], "variants": pooled["pooled"]}),
           "Balanced verdict accuracy is the mean over seeds ([min, max] over seeds); the other intervals are 95 % "
           "bootstrap intervals over questions of each question's seed-averaged score.", "",
           "## Every seed", "", results_table({"n": pooled["n"], "variants": pooled["variants"]}),
           "## Differences (paired, same questions)", "",
           "| comparison | metric | difference | 95 % interval | reading |", "|---|---|---|---|---|"]
    for c in pooled["comparisons"]:
        out.append(f"| {c['a']} − {c['b']} | {c['metric']} | {c['diff']:+.1f} | [{c['lo']:+.1f}, {c['hi']:+.1f}] | "
                   f"{c['verdict']} |")
    return "\n".join(out) + "\n"

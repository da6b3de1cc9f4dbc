"""LaFFi's predicted feedback scored against the room's: per variant, how often the verdict it predicted on its own
answer (correct or not, from the self-feedback the Ask tab showed) matched the participant's rating of that answer.

Usage:
    stats = agreement(store.rows())                     # {variant: VariantAgreement}; withdrawn rows are not read
    s = stats["laffi"]; s.agreement, s.interval, s.balanced_accuracy, s.confusion, s.disagreements
    report(store.rows(), may_show=lambda row: ...)      # plain JSON (/feedback_agreement): disagreeing rows' texts
                                                        # only where may_show says so, the numbers always
    agreement_table(stats.values()), disagreement_table(rows)   # rows of plain text for a table

What counts: a stored row whose answer had a predicted self-feedback (predicted_feedback) and that the participant
rated. Their verdict is the rating (👍 = the answer is right, 👎 = it is not); a row without a rating counts by
its critique's first word (Correct / Partly correct / Incorrect, as the form's example starts), and a row with
neither is not rated. The predicted verdict (laffi.feedback.store records it with the row) "correct" says right,
"partly" and "incorrect" say not right, and a feedback that starts with no verdict is a disagreement - as the
evaluation counts it (laffi.evaluation.evaluate.feedback_metrics), so the room's numbers read like the adapter's.
Balanced accuracy is the mean of the share of answers rated right that it called correct and the share of those
rated wrong that it did not (laffi.evaluation.stats.balanced_verdict_accuracy: 50 is a coin toss whatever the mix);
a room that likes most answers would otherwise reward a variant that always says "Correct". The interval is the
Wilson score interval (95 %) of the agreement rate; beside it, what always giving the room's majority rating
would agree (the trivial policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from laffi.evaluation.stats import balanced_verdict_accuracy, wilson_interval
from laffi.inference.prompts import parse_feedback

INTERVAL = "Wilson score interval, 95 %"
CALLED = ("predicted_correct", "predicted_not_correct", "no_verdict")  # the confusion matrix's columns
RATED = ("participant_right", "participant_wrong")  # and its rows
HEADERS = ["variant", "rated answers", "agreed", "agreement %", "95 % interval (Wilson)", "balanced accuracy %",
           "always the majority rating %", "rated right · called correct", "rated right · called not correct",
           "rated wrong · called correct", "rated wrong · called not correct", "no verdict"]
DISAGREEMENT_HEADERS = ["id", "variant", "participant", "predicted", "question", "answer", "predicted feedback",
                        "critique"]
SHOWN_FIELDS = ("id", "variant", "question", "answer", "predicted_feedback", "predicted_verdict", "thumbs",
                "critique", "correct_answer")  # what a disagreeing row shows (no session id, no annotator)


def participant_verdict(row: dict) -> bool | None:
    """True (the participant says the answer is right), False (not right) or None (not rated)."""
    if row.get("thumbs") in (1, -1):
        return row["thumbs"] == 1
    verdict = parse_feedback(row.get("critique") or "")[0]
    return None if verdict is None else verdict == "correct"


def judged(row: dict) -> bool:
    """Whether a row counts: its answer had a predicted self-feedback and the participant rated it."""
    return bool((row.get("predicted_feedback") or "").strip()) and participant_verdict(row) is not None


def cell(right: bool, predicted: str | None) -> tuple[str, str]:
    """A counted row's place in the confusion matrix: (RATED row, CALLED column)."""
    called = "no_verdict" if predicted is None else "predicted_correct" if predicted == "correct" else \
        "predicted_not_correct"
    return RATED[0] if right else RATED[1], called


@dataclass
class VariantAgreement:
    variant: str
    confusion: dict = field(default_factory=lambda: {r: dict.fromkeys(CALLED, 0) for r in RATED})
    disagreements: list[dict] = field(default_factory=list)  # the rows, in id order
    _right: list[bool] = field(default_factory=list)
    _called: list[bool] = field(default_factory=list)

    def count(self, row: dict) -> None:
        right, predicted = participant_verdict(row), row.get("predicted_verdict")
        rated, called = cell(right, predicted)
        self.confusion[rated][called] += 1
        self._right.append(right)
        self._called.append(predicted == "correct")
        if predicted is None or (predicted == "correct") != right:
            self.disagreements.append(row)

    @property
    def rated(self) -> int:
        return len(self._right)

    @property
    def agreed(self) -> int:
        return self.rated - len(self.disagreements)

    @property
    def agreement(self) -> float:
        return 100.0 * self.agreed / self.rated

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.agreed, self.rated)

    @property
    def balanced_accuracy(self) -> float | None:
        """None while every rated answer got the same rating (the other class's share is undefined)."""
        return balanced_verdict_accuracy(self._right, self._called)

    @property
    def majority(self) -> float:
        """The agreement of always giving the room's most common rating of this variant's answers."""
        right = sum(self._right)
        return 100.0 * max(right, self.rated - right) / self.rated


def agreement(rows: Iterable[dict]) -> dict[str, VariantAgreement]:
    """Per variant (in the order first seen), the rows that count (see judged) scored; variants with none left out."""
    out: dict[str, VariantAgreement] = {}
    for row in rows:
        if judged(row):
            out.setdefault(row.get("variant") or "?", VariantAgreement(row.get("variant") or "?")).count(row)
    return out


def rounded(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def report(rows: Iterable[dict], may_show: Callable[[dict], bool] = lambda row: True,
           order: Callable[[Iterable[str]], list[str]] = sorted) -> dict:
    """Plain JSON: per variant the counts, agreement with its interval, balanced accuracy, the majority rating's
    agreement and the disagreeing rows that may_show allows (how many there are in all is always said)."""
    rows = list(rows)
    stats = agreement(rows)
    variants = []
    for name in order(stats):
        s = stats[name]
        lo, hi = s.interval
        shown = [{k: r.get(k) for k in SHOWN_FIELDS} for r in s.disagreements if may_show(r)]
        variants.append({"variant": name, "rated": s.rated, "agreed": s.agreed, "agreement": rounded(s.agreement),
                         "interval": [rounded(lo), rounded(hi)], "balanced_accuracy": rounded(s.balanced_accuracy),
                         "majority_agreement": rounded(s.majority), "confusion": s.confusion,
                         "disagreements": len(s.disagreements), "disagreement_rows": shown})
    return {"interval": INTERVAL, "rated": sum(v["rated"] for v in variants),
            "with_predicted_feedback": sum(bool((r.get("predicted_feedback") or "").strip()) for r in rows),
            "variants": variants}


def percent(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def agreement_table(variants: list[dict]) -> list[list]:
    """report()'s variants as table rows (numbers and variant names only)."""
    out = []
    for v in variants:
        c = v["confusion"]
        lo, hi = v["interval"]
        out.append([v["variant"], v["rated"], v["agreed"], percent(v["agreement"]), f"[{lo:.1f}, {hi:.1f}]",
                    percent(v["balanced_accuracy"]), percent(v["majority_agreement"]),
                    *(c[r][k] for r in RATED for k in CALLED[:2]), sum(c[r]["no_verdict"] for r in RATED)])
    return out


def rating_text(row: dict) -> str:
    right = participant_verdict(row)
    how = {1: "👍", -1: "👎"}.get(row.get("thumbs"), "critique")
    return f"{how} {'right' if right else 'wrong'}"


def disagreement_table(variants: list[dict]) -> list[list]:
    """The disagreeing rows report() let through, as plain-text table rows."""
    return [[r["id"], r["variant"], rating_text(r), r["predicted_verdict"] or "(no verdict)", r["question"],
             r["answer"] or "(no answer)", r["predicted_feedback"], r["critique"] or ""]
            for v in variants for r in v["disagreement_rows"]]

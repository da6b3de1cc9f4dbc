"""SQuAD v2 exact match and F1, exactly as the official evaluate-v2.0.py computes them (no hub needed).

Usage:
    scores = squad_v2_scores(examples, {"qid": "predicted span", ...})   # {"exact": 41.2, "f1": 47.9, ...}
    scores = squad_v2_scores(examples, preds, na_probs={"qid": 0.93, ...})  # + best_f1, best_f1_thresh, ...

The official rules, kept to the letter so numbers are comparable with published ones:
- normalise: lowercase, drop ASCII punctuation, drop the words a/an/the, collapse whitespace;
- gold answers whose normalised text is empty are ignored; a question with no gold answer has gold [""] and
  scores 1 only for the empty prediction ("no answer");
- F1 over bag-of-tokens overlap; if either side has no tokens, F1 = 1 if both are empty else 0;
- per question, the max over gold answers; reported as percentages, overall and for HasAns / NoAns;
- with a no-answer probability per question (the official --na-prob-file): predictions with na_prob above
  --na-prob-thresh (default 1.0) count as "no answer", and best_exact / best_f1 (+ _thresh) report the threshold
  that would have been best on these very questions - optimistic, since it is chosen on what it scores.
"""

from __future__ import annotations

import collections
import re
import string
from pathlib import Path

# The same scorer as an `evaluate` metric module: evaluate.load(METRIC_PATH) works offline (laffi_squad_v2.py beside
# this file).
METRIC_PATH = str(Path(__file__).parent / "laffi_squad_v2.py")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def get_tokens(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def compute_exact(gold: str, pred: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(pred))


def compute_f1(gold: str, pred: str) -> float:
    gold_toks, pred_toks = get_tokens(gold), get_tokens(pred)
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    num_same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_toks), num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def gold_answers(answers) -> list[str]:
    return [a for a in answers if normalize_answer(a)] or [""]


def score_one(answers, pred: str) -> tuple[int, float]:
    """(exact, f1) of one prediction against its gold answers (empty list = unanswerable)."""
    golds = gold_answers(answers)
    return max(compute_exact(g, pred) for g in golds), max(compute_f1(g, pred) for g in golds)


def _summary(exact: dict, f1: dict, qids: list[str]) -> dict:
    total = len(qids)
    return {"exact": 100.0 * sum(exact[q] for q in qids) / total,
            "f1": 100.0 * sum(f1[q] for q in qids) / total, "total": total}


def apply_no_ans_threshold(scores: dict, na_probs: dict, has_ans: dict, thresh: float) -> dict:
    """The official rule: a prediction whose na_prob is above thresh becomes "no answer" (1 on NoAns, else 0)."""
    return {q: float(not has_ans[q]) if na_probs[q] > thresh else s for q, s in scores.items()}


def find_best_thresh(preds: dict, scores: dict, na_probs: dict, has_ans: dict) -> tuple[float, float]:
    """(best score in %, its threshold), the official search: walk questions by rising na_prob, answering each
    in turn (gain: its score if answerable, -1 if a non-empty prediction on an unanswerable one)."""
    cur = best = sum(1 for q in scores if not has_ans[q])
    best_thresh = 0.0
    for q in sorted(na_probs, key=lambda k: na_probs[k]):
        if q not in scores:
            continue
        cur += scores[q] if has_ans[q] else (-1 if preds[q] else 0)
        if cur > best:
            best, best_thresh = cur, na_probs[q]
    return 100.0 * best / max(len(scores), 1), best_thresh


def squad_v2_scores(examples, predictions: dict[str, str], na_probs: dict[str, float] | None = None,
                    na_prob_thresh: float = 1.0) -> dict:
    """Official-style metrics dict. laffi always predicts every question; a missing one scores 0 here (the
    official v2 script would fail on it in its HasAns/NoAns breakdown). With na_probs, also the official
    threshold step (see the module docstring)."""
    exact, f1 = {}, {}
    for ex in examples:
        if ex.qid in predictions:
            exact[ex.qid], f1[ex.qid] = score_one(ex.answers, predictions[ex.qid])
        else:
            exact[ex.qid], f1[ex.qid] = 0, 0.0
    raw_exact, raw_f1 = exact, f1
    if na_probs is not None:
        has_ans = {ex.qid: bool(ex.answers) for ex in examples}
        probs = {ex.qid: na_probs.get(ex.qid, 0.0) for ex in examples}
        exact = apply_no_ans_threshold(exact, probs, has_ans, na_prob_thresh)
        f1 = apply_no_ans_threshold(f1, probs, has_ans, na_prob_thresh)
    out = _summary(exact, f1, [ex.qid for ex in examples])
    for prefix, has in (("HasAns", True), ("NoAns", False)):
        qids = [ex.qid for ex in examples if bool(ex.answers) == has]
        if qids:
            out.update({f"{prefix}_{k}": v for k, v in _summary(exact, f1, qids).items()})
    if na_probs is not None:
        preds = {ex.qid: predictions.get(ex.qid, "") for ex in examples}
        out["best_exact"], out["best_exact_thresh"] = find_best_thresh(preds, raw_exact, probs, has_ans)
        out["best_f1"], out["best_f1_thresh"] = find_best_thresh(preds, raw_f1, probs, has_ans)
    return out

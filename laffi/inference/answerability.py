"""Answerability: every variant's best span and how sure it is that the passage answers at all, with the threshold
between the two chosen on validation questions - the standard SQuAD 2.0 set-up (predictions + na_prob file).

Usage:
    probe = FirstToken(abstain_token_ids(tokenizer), forbid=True)   # P(reply starts "no ...") and a forced span
    shown = decide(span, na_prob, threshold)                         # "" when na_prob > threshold (official rule)
    cal = choose_threshold(examples, spans, na_probs, how="p_abstain")   # on validation questions only
    write_calibration(adapter_dir, cal); read_calibration(adapter_dir, precision="bfloat16")   # calibration.json
                                                    # beside the weights, one threshold per precision chosen in
    answerability_auc(examples, na_probs)                             # HasAns vs NoAns ranked by na_prob

Why: greedy decoding turns a model's doubt into "no answer". A model that has learned to find spans but not when
to answer then abstains on most questions and scores what the trivial always-"no answer" policy scores. So each
variant gives two things per question: its best non-abstaining span (the reply with the abstaining first tokens
forbidden) and a no-answer probability `na_prob` - for a direct variant, the probability that its reply starts
with one of ABSTAIN_WORDS at the QA prompt; for a LaFFi variant judging candidates, from its predicted verdict
(laffi.inference.selffeedback). The shown answer is the span unless na_prob exceeds the variant's threshold, chosen
where it maximises F1 on the validation article and stored in the adapter folder (calibration.json; the base model's in
<adapters_dir>/base-calibration.json). Without a calibration the threshold is 0.5, which is close to greedy.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path

from laffi.inference.surface import LanguageModel
from laffi.squad.metric import find_best_thresh, score_one

# A reply whose first token is one of these words (any case, with or without a leading space) abstains: the QA
# prompt asks for "no answer", and models also say "None", "Unknown", "Nothing". "Not" is left out: it starts real
# answers ("not guilty") as often as abstentions.
ABSTAIN_WORDS = ("no", "none", "nothing", "unknown")
VERDICT_CORRECT = "Correct"  # how the LaFFi feedback format (laffi.feedback.annotation) starts on a right answer
DEFAULT_THRESHOLD = 0.5
ALWAYS_NO_ANSWER = "always no answer"  # the row of the policy that needs no model ("" for every question)
# How a verifier's na_prob is made from its verdicts (chosen on validation, written in calibration.json):
#   p_abstain   direct variants: P(the reply's first token abstains)
#   span        1 - P(Correct | best span)
#   contrast    P(Correct | "no answer") / (P(Correct | "no answer") + P(Correct | best span))
#   rank        the share of "no answer" in the likelihood of all candidates (the 'rank' answer path)
NA_PROB_KINDS = ("p_abstain", "span", "contrast", "rank")

_TOKEN_SETS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _word_token_ids(tokenizer, words: tuple[str, ...], lower: bool) -> list[int]:
    key = (words, lower)
    per_tok = _TOKEN_SETS.setdefault(tokenizer, {})
    if key not in per_tok:
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        ids = []
        for i, p in enumerate(pieces):
            text = tokenizer.convert_tokens_to_string([p]).strip() if p is not None else ""
            if (text.lower() if lower else text) in words:
                ids.append(i)
        per_tok[key] = ids
    return per_tok[key]


def abstain_token_ids(tokenizer) -> list[int]:
    """Token ids that start an abstaining reply (ABSTAIN_WORDS, any case, with or without a leading space)."""
    return _word_token_ids(tokenizer, ABSTAIN_WORDS, lower=True)


def correct_token_ids(tokenizer) -> list[int]:
    """Token ids of a feedback that starts with the verdict "Correct" (not "Partly correct", not "Incorrect")."""
    return _word_token_ids(tokenizer, (VERDICT_CORRECT,), lower=False)


@dataclass(frozen=True)
class FirstToken:
    """What generation measures at a reply's first token: the probability that it is one of token_ids, and with
    forbid=True those tokens are then ruled out (the reply must be something else: the best span)."""

    token_ids: tuple[int, ...]
    forbid: bool = False


class FirstTokenProbe:
    """A transformers logits processor for one batch: records P(first token in ids) per row, optionally forbids
    them. Called once per decoding step; only the first step is touched."""

    def __init__(self, spec: FirstToken, device):
        import torch

        self.ids = torch.tensor(spec.token_ids, dtype=torch.long, device=device)
        self.forbid = spec.forbid
        self.values: list[float] | None = None

    def __call__(self, input_ids, scores):
        import torch

        if self.values is None:
            probs = torch.softmax(scores.float(), dim=-1)
            self.values = probs[:, self.ids].sum(-1).tolist() if len(self.ids) else [0.0] * scores.shape[0]
            if self.forbid and len(self.ids):
                scores = scores.clone()
                scores[:, self.ids] = float("-inf")
        return scores


def decide(span: str, na_prob: float | None, threshold: float | None) -> str:
    """The shown answer: "" (no answer) when na_prob > threshold, as the official evaluation applies it."""
    if na_prob is None:
        return span
    return "" if na_prob > (DEFAULT_THRESHOLD if threshold is None else threshold) else span


def answerability_auc(examples, na_probs: list[float]) -> float | None:
    """Probability that an unanswerable question gets a higher na_prob than an answerable one (ties count half);
    0.5 is chance. None when one of the two kinds is missing."""
    noans = [p for ex, p in zip(examples, na_probs) if not ex.answers]
    hasans = [p for ex, p in zip(examples, na_probs) if ex.answers]
    if not noans or not hasans:
        return None
    import numpy as np

    a, b = np.asarray(noans)[:, None], np.asarray(hasans)[None, :]
    return float(((a > b).sum() + 0.5 * (a == b).sum()) / (a.size * b.size))


@dataclass
class Calibration:
    """A variant's no-answer threshold and how it was chosen (calibration.json)."""

    threshold: float = field(metadata={"help": "Abstain when na_prob is above this."})
    na_prob: str = field(default="p_abstain", metadata={"help": f"How na_prob is made: {', '.join(NA_PROB_KINDS)}."})
    chosen_on: dict = field(default_factory=dict, metadata={"help": "Which questions chose it (data, articles, n)."})
    validation: dict = field(default_factory=dict, metadata={"help": "F1 at the threshold, AUC, abstain rate there."})
    base: str | None = field(default=None, metadata={"help": "The base model (for the base model's own file)."})
    precision: str | None = field(default=None, metadata={"help": "The dtype the base weights had when it was "
                                                                  "chosen (float32 where unrecorded)."})


def choose_threshold(examples, spans: list[str], na_probs: list[float], how: str = "p_abstain",
                     chosen_on: dict | None = None) -> Calibration:
    """The threshold that maximises SQuAD F1 on these (validation) questions, by the official search."""
    f1s = {ex.qid: score_one(ex.answers, s)[1] for ex, s in zip(examples, spans)}
    ems = {ex.qid: score_one(ex.answers, s)[0] for ex, s in zip(examples, spans)}
    preds = {ex.qid: s for ex, s in zip(examples, spans)}
    has_ans = {ex.qid: bool(ex.answers) for ex in examples}
    probs = {ex.qid: p for ex, p in zip(examples, na_probs)}
    best_f1, thresh = find_best_thresh(preds, f1s, probs, has_ans)
    best_em, _ = find_best_thresh(preds, ems, probs, has_ans)
    abstain = 100.0 * sum(p > thresh for p in na_probs) / max(len(na_probs), 1)
    auc = answerability_auc(examples, na_probs)
    return Calibration(threshold=thresh, na_prob=how, chosen_on=dict(chosen_on or {}, n=len(examples)),
                       validation={"f1": round(best_f1, 2), "best_exact": round(best_em, 2),
                                   "abstain": round(abstain, 2), "auc": None if auc is None else round(auc, 4)})


KEEP_F1 = 0.5  # F1 points: another precision keeps the float32 threshold when it is this close to its own best


def kept_threshold(examples, spans: list[str], na_probs: list[float], cal: Calibration,
                   float32: Calibration | None) -> Calibration:
    """cal (chosen in bfloat16, say), or float32's threshold where that was chosen the same way on the same
    questions and, on these scores, comes within KEEP_F1 of cal's F1 (cal then says so in chosen_on).

    Why (measured: sft, 200 validation questions): its float32 and bfloat16 no-answer scores rank the questions
    alike (AUC 0.7981 and 0.7988), yet the best-F1 search, whose F1 curve is flat near its top, picked 0.50 in
    one and 0.40 in the other; on other questions that jump alone moved F1 by 1.4 points. A threshold re-chosen
    only when the precision's scores call for it is one noisy choice fewer, and still chosen on validation data."""
    if float32 is None or float32.na_prob != cal.na_prob or precision_of(asdict(float32)) != "float32":
        return cal
    same = ("sha256", "articles", "limit", "seed", "n")
    if any(float32.chosen_on.get(k) != cal.chosen_on.get(k) for k in same):
        return cal
    f1 = 100.0 * sum(score_one(ex.answers, decide(s, p, float32.threshold))[1]
                     for ex, s, p in zip(examples, spans, na_probs)) / max(len(examples), 1)
    if cal.validation["f1"] - f1 > KEEP_F1:
        return cal
    abstain = 100.0 * sum(p > float32.threshold for p in na_probs) / max(len(na_probs), 1)
    return Calibration(threshold=float32.threshold, na_prob=cal.na_prob,
                       chosen_on={**cal.chosen_on, "threshold_of": "float32", "own_best": cal.threshold},
                       validation={**cal.validation, "f1": round(f1, 2), "abstain": round(abstain, 2)},
                       base=cal.base, precision=cal.precision)


def write_calibration(path: str | Path, cal: Calibration) -> Path:
    """Write cal to an adapter folder (calibration.json) or to the file path given. Thresholds chosen in
    different precisions live side by side (bfloat16's no-answer probabilities differ a little from float32's):
    the file's own fields are the first precision's, "by_precision" holds the others, and writing replaces
    only the entry of cal's precision."""
    from laffi.adapter_folder import CALIBRATION, AdapterFolder

    target = Path(path)
    folder, name = (AdapterFolder(target), CALIBRATION) if target.is_dir() else (AdapterFolder(target.parent),
                                                                                  target.name)
    old = folder.read(name) or {}
    entry = asdict(cal)
    others = {k: v for k, v in (old.get("by_precision") or {}).items() if k != precision_of(entry)}
    if old.get("threshold") is not None and precision_of(old) != precision_of(entry):
        return folder.write(name, {**old, "by_precision": {**others, precision_of(entry): entry}})
    return folder.write(name, {**entry, **({"by_precision": others} if others else {})})


def precision_of(raw: dict) -> str:
    """The precision a calibration (or its file's fields) was chosen in: float32 where unrecorded."""
    return raw.get("precision") or "float32"


def read_calibration(path: str | Path | None, base: str | None = None,
                     precision: str | None = None) -> Calibration | None:
    """An adapter folder's calibration (or a calibration file's); None when there is none or it is unreadable.
    With `base`, a file written for another base model does not apply (None). With `precision`, the threshold
    chosen in that precision where the file has one, else its first (calibration_warnings says so)."""
    from laffi.adapter_folder import CALIBRATION, AdapterFolder

    if path is None:
        return None
    target = Path(path)
    raw = AdapterFolder(target).read(CALIBRATION) if target.is_dir() else AdapterFolder(target.parent).read(
        target.name)
    if not isinstance(raw, dict):
        return None
    if precision is not None and precision_of(raw) != precision:
        raw = (raw.get("by_precision") or {}).get(precision) or raw
    try:
        cal = Calibration(**{k: raw[k] for k in raw if k in Calibration.__dataclass_fields__})
    except (TypeError, KeyError):
        return None
    if base is not None and cal.base is not None and cal.base != base:
        return None
    return cal if cal.na_prob in NA_PROB_KINDS else None


def base_calibration_path(lm: LanguageModel) -> Path | None:
    """Where the base model's calibration lives: beside the first adapters folder (base-calibration.json)."""
    from laffi.adapter_folder import BASE_CALIBRATION
    from laffi.inference.models import adapter_folders

    folders = adapter_folders(lm.config.adapters_dir)
    return folders[0] / BASE_CALIBRATION if folders else None


def calibrations(lm: LanguageModel, variants: list[str]) -> dict[str, Calibration | None]:
    """Each variant's calibration: its adapter folder's, the base model's file for base (if it was written for
    this base model), None where there is none; the one chosen in the precision the model runs in, where there
    is one."""
    from laffi.inference.models import BASE_VARIANT

    serving = lm.precision.dtype if lm.precision is not None else None
    out = {}
    for v in variants:
        if v == BASE_VARIANT:
            out[v] = read_calibration(base_calibration_path(lm), base=lm.config.base, precision=serving)
        else:
            out[v] = read_calibration(lm.adapters.get(v), precision=serving)
    return out


def direct_thresholds(lm: LanguageModel, variants: list[str]) -> dict[str, float]:
    """The thresholds that apply to variants' direct answers (calibrations of kind p_abstain)."""
    return {v: c.threshold for v, c in calibrations(lm, variants).items() if c and c.na_prob == "p_abstain"}


def calibration_warnings(lm: LanguageModel, variants: list[str] | None = None) -> list[str]:
    """A sentence for every variant whose threshold was chosen in another precision than the base weights have
    now (bfloat16's no-answer probabilities differ a little from float32's): recalibrate, or read it as a warning."""
    serving = lm.precision.dtype if lm.precision is not None else None
    out = []
    for v, cal in calibrations(lm, variants or lm.variants).items():
        chosen = (cal.precision or "float32") if cal else None
        if cal and serving and chosen != serving:
            out.append(f"{v}'s no-answer threshold was chosen in {chosen}, but the model now runs in {serving}: its "
                       f"abstentions may shift a little (`python -m laffi calibrate --variants {v}` rechooses it).")
    return out

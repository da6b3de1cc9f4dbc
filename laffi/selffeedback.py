"""Feedback at inference, and the LaFFi answer path: draft -> predicted feedback -> the answer the feedback names.

Usage:
    results = answer_all(lm, pairs, ["base", "sft", "laffi"], feedback=True)
    r = results["laffi"][0]      # r.answer (what the app shows), r.direct, r.draft, r.draft_by, r.feedback
    fb = self_feedback(lm, pairs, drafts)   # {variant: [Feedback]} on the drafts each variant is given

LaFFi learns (passage, question, draft) -> feedback that ends with what the answer should be. So a LaFFi variant
answers the way it was trained: someone writes a draft (the base model, or the variant itself at the QA prompt),
the variant predicts the feedback on it, and the answer is the one that feedback names ("... so the answer should
be X" / "... so the right reply is: no answer"). Each adapter says which path is its own (AnswerPath, from its
folder's answer_path.json, chosen on the validation article); every other variant answers directly and, when
asked, predicts feedback on its own answer (self-feedback, with a "revised" answer), as the README describes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from laffi.answerability import FirstToken, calibrations, correct_token_ids, decide
from laffi.errors import LaffiError
from laffi.generation import Answer, GenerationConfig, answer_questions, generate_batched
from laffi.models import BASE_VARIANT
from laffi.prompts import feedback_prompt, first_line, parse_feedback

FEEDBACK_MAX_NEW_TOKENS = 96  # the reference feedback is ~40 tokens; 99 % of it fits in 81, with the answer at the end
PATH_FILE = "answer_path.json"  # in an adapter folder: that variant's AnswerPath
PATH_KINDS = ("direct", "feedback", "verify")


@dataclass(frozen=True)
class AnswerPath:
    """How a variant's shown answer is made."""

    kind: str = field(default="direct", metadata={"help": "'direct' (its reply to the QA prompt), 'feedback' "
                                                          "(the answer its feedback on a draft names) or 'verify' "
                                                          "(the candidate its verdict most likely calls Correct)."})
    draft_by: str = field(default="self", metadata={"help": "Who writes the draft it judges: 'self' (its own direct "
                                                            "answer) or 'base' (the base model's; with 'verify': "
                                                            "both are candidates)."})

    def __post_init__(self):
        if self.kind not in PATH_KINDS or self.draft_by not in ("self", "base"):
            raise LaffiError(f"An answer path is kind 'direct', 'feedback' or 'verify' with draft_by 'self' or "
                             f"'base', not {self.kind!r}/{self.draft_by!r}.")

    def label(self) -> str:
        if self.kind == "verify":
            return "verifier over its own" + (" and the base model's" if self.draft_by == "base" else "") + " span"
        return "direct" if self.kind == "direct" else f"via feedback on the {self.draft_by} draft".replace(
            "self draft", "variant's own draft").replace("base draft", "base model's draft")


def read_answer_path(adapter_dir: str | Path | None) -> AnswerPath:
    """The path an adapter folder asks for; without answer_path.json: 'feedback' (base drafts) for adapters trained
    on feedback alone (their QA reply was never trained), 'verify' (its own and the base model's spans) for
    laffi+sft adapters (they answer and judge), else 'direct'."""
    if adapter_dir is None:
        return AnswerPath()
    folder = Path(adapter_dir)
    try:
        if (folder / PATH_FILE).is_file():
            return AnswerPath(**json.loads((folder / PATH_FILE).read_text()))
        method = json.loads((folder / "training_config.json").read_text())["train"]["method"]
    except (OSError, ValueError, KeyError, TypeError):
        return AnswerPath()
    return {"laffi": AnswerPath("feedback", "base"), "laffi+sft": AnswerPath("verify", "base")}.get(method, AnswerPath())


def write_answer_path(adapter_dir: str | Path, path: AnswerPath) -> None:
    from laffi.io import write_json_atomic

    write_json_atomic(Path(adapter_dir) / PATH_FILE, asdict(path))


@dataclass
class Feedback:
    text: str  # the predicted feedback, one line
    verdict: str | None  # "correct" / "partly" / "incorrect" / None (feedback did not start with a verdict)
    revised_answer: str  # what the feedback says the answer should be, or the draft if it does not say
    revised: bool  # True when the feedback named an answer

    def fields(self) -> dict:
        """What `ask --feedback` and the app add to a variant's result."""
        return {"feedback": self.text, "verdict": self.verdict, "revised_answer": self.revised_answer}


@dataclass
class Result:
    """One variant on one question: its direct answer, the draft it judged, its feedback, and the shown answer."""

    answer: str  # what this variant answers (per its AnswerPath); "" = no answer
    direct: Answer
    path: AnswerPath
    draft: str | None = None  # the answer its feedback is about (None: no feedback asked)
    draft_by: str | None = None
    feedback: Feedback | None = None
    span: str | None = None  # its best non-empty answer, shown or not (laffi.answerability)
    na_prob: float | None = None  # how sure it is that the passage does not answer
    threshold: float | None = None  # above it, the shown answer is "" (None: the default, uncalibrated)
    candidates: list[dict] | None = None  # verify path: [{"answer", "p_correct"}], "" = no answer

    def fields(self) -> dict:
        out = {"answer": self.answer, "direct_answer": self.direct.text, "raw": self.direct.raw,
               "answer_path": self.path.label(), "span": self.span, "na_prob": self.na_prob,
               "threshold": self.threshold}
        if self.candidates is not None:
            out["candidates"] = self.candidates
        if self.feedback is not None:
            out.update(self.feedback.fields(), draft=self.draft, draft_by=self.draft_by)
        return out


def verify(lm, pairs: list[tuple[str, str]], candidates: dict[str, list[list[str]]],
           cfg: GenerationConfig | None = None, progress=None) -> dict[str, list[list[float]]]:
    """P(the variant's feedback on a candidate starts "Correct") for every candidate answer ("" = no answer):
    {variant: [[p per candidate] per pair]}. One forward pass per candidate at the feedback prompt, no text
    generated; candidates of one passage share its prefill (laffi.prefix), variants share batches."""
    rows, where = [], []
    for v, per_pair in candidates.items():
        for i, cands in enumerate(per_pair):
            for j, c in enumerate(cands):
                rows.append((feedback_prompt(lm.tokenizer, pairs[i][0], pairs[i][1], c), v))
                where.append((v, i, j))
    probs = [None] * len(rows)
    one_step = GenerationConfig(max_new_tokens=1, batch_size=(cfg or GenerationConfig()).batch_size,
                                stop_at_newline=False)
    generate_batched(lm, rows, one_step, progress, None, FirstToken(tuple(correct_token_ids(lm.tokenizer))), probs)
    out = {v: [[0.0] * len(c) for c in per_pair] for v, per_pair in candidates.items()}
    for (v, i, j), p in zip(where, probs):
        out[v][i][j] = float(p or 0.0)
    return out


def verdict_na_prob(p_no_answer: float, p_best: float, how: str) -> float:
    """A verifier's no-answer probability from its verdicts (laffi.answerability.NA_PROB_KINDS)."""
    if how == "contrast":
        total = p_no_answer + p_best
        return 0.5 if total <= 0 else p_no_answer / total
    return 1.0 - p_best


def self_feedback(lm, pairs: list[tuple[str, str]], drafts: dict[str, list[Answer]],
                  cfg: GenerationConfig | None = None, progress=None, on_text=None) -> dict[str, list[Feedback]]:
    """Each variant predicts feedback on the drafts it is given (one per pair), all in mixed batches.
    on_text(variant, pair index, feedback so far) streams it."""
    cfg = cfg or GenerationConfig(max_new_tokens=FEEDBACK_MAX_NEW_TOKENS)
    variants = list(drafts)
    rows = [(feedback_prompt(lm.tokenizer, c, q, drafts[v][i].text), v)
            for i, (c, q) in enumerate(pairs) for v in variants]
    stream = None if on_text is None else (
        lambda k, text: on_text(variants[k % len(variants)], k // len(variants), text))
    texts = generate_batched(lm, rows, cfg, progress, stream)
    out: dict[str, list[Feedback]] = {v: [] for v in variants}
    for k, text in enumerate(texts):
        v, i = variants[k % len(variants)], k // len(variants)
        text = first_line(text)
        verdict, revised = parse_feedback(text)
        out[v].append(Feedback(text=text, verdict=verdict,
                               revised_answer=drafts[v][i].text if revised is None else revised,
                               revised=revised is not None))
    return out


def answer_paths(lm, variants: list[str], paths: dict[str, AnswerPath] | None = None) -> dict[str, AnswerPath]:
    """Each variant's AnswerPath: the one given, else its adapter folder's (base: direct)."""
    return {v: (paths or {}).get(v) or read_answer_path(lm.adapters.get(v)) for v in variants}


def drafters(variants: list[str], paths: dict[str, AnswerPath], feedback: bool) -> list[str]:
    """Variants whose direct answers are needed: all of them, plus the base model where someone drafts with it."""
    by_base = [v for v in variants if (feedback or paths[v].kind != "direct") and paths[v].draft_by == "base"]
    return list(dict.fromkeys([*variants, *(BASE_VARIANT for _ in by_base)]))


def answer_all(lm, pairs: list[tuple[str, str]], variants: list[str], cfg: GenerationConfig | None = None,
               feedback: bool = False, paths: dict[str, AnswerPath] | None = None, progress=None,
               direct: dict[str, list[Answer]] | None = None, on_text=None) -> dict[str, list[Result]]:
    """Every variant's answer to every (context, question) pair by its own AnswerPath, in stages: all direct
    answers (plus the base model's where a variant drafts with it; `direct` may bring them already made), the
    verdicts of verify-path variants on their candidates, then all feedback - for the variants whose path needs
    it and, with feedback=True, every variant (self-feedback on its own answer). progress(done, total) counts
    generated rows over the stages; on_text(stage, variant, pair index, text so far) streams them (stage:
    "answer" or "feedback")."""
    cfg = cfg or GenerationConfig()
    paths = answer_paths(lm, variants, paths)
    if getattr(lm, "backend", None) is not None:  # a remote server measures no token probabilities
        paths = {v: AnswerPath(draft_by=p.draft_by) if p.kind == "verify" else p for v, p in paths.items()}
    cals = calibrations(lm, variants)
    verifying = [v for v in variants if paths[v].kind == "verify"]
    judged = [v for v in variants if feedback or paths[v].kind == "feedback"]
    needed = [v for v in drafters(variants, paths, feedback) if v not in (direct or {})]
    n_cands = sum(2 + (paths[v].draft_by == "base") for v in verifying)  # at most: own, base, "no answer"
    total = len(pairs) * (len(needed) + len(judged) + n_cands)
    answer_stream = None if on_text is None else (lambda v, i, text: on_text("answer", v, i, text))
    direct = {**(direct or {}), **(answer_questions(lm, pairs, needed, cfg, progress and (
        lambda done, _: progress(done, total)), answer_stream) if needed else {})}
    offset = len(pairs) * len(needed)
    chosen: dict[str, list[tuple[str, float, list[dict]]]] = {}
    if verifying:
        cands = {v: [_candidates(direct, v, i, paths[v]) for i in range(len(pairs))] for v in verifying}
        scores = verify(lm, pairs, cands, cfg, progress and (lambda done, _: progress(offset + done, total)))
        for v in verifying:
            how = cals[v].na_prob if cals[v] and cals[v].na_prob != "p_abstain" else "span"
            chosen[v] = [_choose(c, s, how) for c, s in zip(cands[v], scores[v])]
        offset = len(pairs) * (len(needed) + n_cands)
    drafts = {v: (direct[BASE_VARIANT if paths[v].draft_by == "base" else v] if v not in chosen else
                  [Answer(text=span, raw=span, span=span) for span, _, _ in chosen[v]]) for v in judged}
    fb_cfg = GenerationConfig(max_new_tokens=FEEDBACK_MAX_NEW_TOKENS, batch_size=cfg.batch_size)
    feedback_stream = None if on_text is None else (lambda v, i, text: on_text("feedback", v, i, text))
    fbs = self_feedback(lm, pairs, drafts, fb_cfg, progress and (lambda done, _: progress(offset + done, total)),
                        feedback_stream) if judged else {}
    out = {}
    for v in variants:
        cal = cals[v]
        rows = []
        for i in range(len(pairs)):
            fb = fbs[v][i] if v in fbs else None
            d = direct[v][i]
            row = Result(answer=d.text, direct=d, path=paths[v], draft=drafts[v][i].text if fb else None,
                         draft_by=paths[v].draft_by if fb else None, feedback=fb, span=d.span, na_prob=d.na_prob,
                         threshold=cal.threshold if cal and cal.na_prob == "p_abstain" else None)
            if paths[v].kind == "feedback":
                row.answer = fb.revised_answer
            elif v in chosen:
                span, na, listed = chosen[v][i]
                threshold = cal.threshold if cal and cal.na_prob != "p_abstain" else None
                row.answer, row.span, row.na_prob, row.threshold, row.candidates = (
                    decide(span, na, threshold), span, na, threshold, listed)
                row.draft_by = "self" if fb else None
            rows.append(row)
        out[v] = rows
    return out


def _candidates(direct: dict[str, list[Answer]], v: str, i: int, path: AnswerPath) -> list[str]:
    """What a verify-path variant judges for pair i: its own best span, the base model's (draft_by 'base'), and
    "no answer" (last, ""); empty and repeated spans once."""
    spans = [direct[v][i].span or direct[v][i].text]
    if path.draft_by == "base" and BASE_VARIANT in direct:
        spans.append(direct[BASE_VARIANT][i].span or direct[BASE_VARIANT][i].text)
    return [*dict.fromkeys(s for s in spans if s and s.strip()), ""]


def _choose(cands: list[str], p_correct: list[float], how: str) -> tuple[str, float, list[dict]]:
    """(best non-empty candidate, na_prob, the candidates with their verdicts) for one question."""
    listed = [{"answer": c, "p_correct": round(p, 4)} for c, p in zip(cands, p_correct)]
    spans = [(p, c) for c, p in zip(cands, p_correct) if c]
    p_no = next((p for c, p in zip(cands, p_correct) if not c), 0.0)
    if not spans:
        return "", 1.0, listed
    p_best, best = max(spans, key=lambda t: t[0])
    return best, verdict_na_prob(p_no, p_best, how), listed

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

from dataclasses import asdict, dataclass, field
from pathlib import Path

from laffi.adapter_folder import ANSWER_PATH, AdapterFolder
from laffi.errors import LaffiError
from laffi.inference.answerability import FirstToken, calibrations, correct_token_ids, decide
from laffi.inference.events import GenerationEvent, OnEvent, Row, with_total
from laffi.inference.generation import Answer, GenerationConfig, answer_questions, generate_batched, generator_of
from laffi.inference.models import BASE_VARIANT
from laffi.inference.prompts import feedback_prompt, first_line, parse_feedback
from laffi.inference.surface import LanguageModel

FEEDBACK_MAX_NEW_TOKENS = 96  # the reference feedback is ~40 tokens; 99 % of it fits in 81, with the answer at the end
PATH_KINDS = ("direct", "feedback", "verify", "rank")
CHOOSERS = ("verify", "rank")  # paths that choose among candidates (laffi.inference.selffeedback._candidates)


@dataclass(frozen=True)
class AnswerPath:
    """How a variant's shown answer is made."""

    kind: str = field(default="direct", metadata={"help": "'direct' (its reply to the QA prompt), 'feedback' "
                                                          "(the answer its feedback on a draft names), 'verify' "
                                                          "(the candidate its verdict most likely calls Correct) or "
                                                          "'rank' (the candidate it finds most likely as its reply)."})
    draft_by: str = field(default="self", metadata={"help": "Who writes the draft it judges: 'self' (its own direct "
                                                            "answer) or 'base' (the base model's; with 'verify': "
                                                            "both are candidates)."})

    def __post_init__(self):
        if self.kind not in PATH_KINDS or self.draft_by not in ("self", "base"):
            raise LaffiError(f"An answer path is kind 'direct', 'feedback', 'verify' or 'rank' with draft_by 'self' "
                             f"or 'base', not {self.kind!r}/{self.draft_by!r}.")

    def label(self) -> str:
        if self.kind in CHOOSERS:
            return ("verifier" if self.kind == "verify" else "likelihood ranking") + " over its own" + (
                " and the base model's" if self.draft_by == "base" else "") + " span"
        return "direct" if self.kind == "direct" else f"via feedback on the {self.draft_by} draft".replace(
            "self draft", "variant's own draft").replace("base draft", "base model's draft")


def read_answer_path(adapter_dir: str | Path | None) -> AnswerPath:
    """The path an adapter folder asks for; without answer_path.json: 'feedback' (base drafts) for adapters trained
    on feedback alone (their QA reply was never trained), 'verify' (its own and the base model's spans) for
    laffi+sft adapters (they answer and judge), else 'direct'."""
    if adapter_dir is None:
        return AnswerPath()
    folder = AdapterFolder(adapter_dir)
    stored = folder.read(ANSWER_PATH)
    try:
        if stored is not None:
            return AnswerPath(**stored)
    except (TypeError, LaffiError):
        return AnswerPath()
    method = folder.method()
    return {"laffi": AnswerPath("feedback", "base"), "laffi+sft": AnswerPath("verify", "base")}.get(method, AnswerPath())


def write_answer_path(adapter_dir: str | Path, path: AnswerPath) -> None:
    AdapterFolder(adapter_dir).write(ANSWER_PATH, asdict(path))


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
    span: str | None = None  # its best non-empty answer, shown or not (laffi.inference.answerability)
    na_prob: float | None = None  # how sure it is that the passage does not answer
    threshold: float | None = None  # above it, the shown answer is "" (None: the default, uncalibrated)
    candidates: list[dict] | None = None  # verify/rank: [{"answer", "score"}] ("" = no answer): P(verdict Correct),
    # or the candidate's share of the likelihood of all of them

    def fields(self) -> dict:
        out = {"answer": self.answer, "direct_answer": self.direct.text, "raw": self.direct.raw,
               "answer_path": self.path.label(), "span": self.span, "na_prob": self.na_prob,
               "threshold": self.threshold}
        if self.candidates is not None:
            out["candidates"] = self.candidates
        if self.feedback is not None:
            out.update(self.feedback.fields(), draft=self.draft, draft_by=self.draft_by)
        return out


def verify(lm: LanguageModel, pairs: list[tuple[str, str]], candidates: dict[str, list[list[str]]],
           cfg: GenerationConfig | None = None, on_event: OnEvent | None = None) -> dict[str, list[list[float]]]:
    """P(the variant's feedback on a candidate starts "Correct") for every candidate answer ("" = no answer):
    {variant: [[p per candidate] per pair]}. One forward pass per candidate at the feedback prompt, no text
    generated; candidates of one passage share its prefill (laffi.inference.prefix), variants share batches.
    on_event: stage "verdict", index: the pair's."""
    rows, where = [], []
    for v, per_pair in candidates.items():
        for i, cands in enumerate(per_pair):
            for j, c in enumerate(cands):
                rows.append(Row(feedback_prompt(lm.tokenizer, pairs[i][0], pairs[i][1], c), v, i, "verdict"))
                where.append((v, i, j))
    probs = [None] * len(rows)
    one_step = GenerationConfig(max_new_tokens=1, batch_size=(cfg or GenerationConfig()).batch_size,
                                stop_at_newline=False)
    generate_batched(lm, rows, one_step, on_event, FirstToken(tuple(correct_token_ids(lm.tokenizer))), probs)
    out = {v: [[0.0] * len(c) for c in per_pair] for v, per_pair in candidates.items()}
    for (v, i, j), p in zip(where, probs):
        out[v][i][j] = float(p or 0.0)
    return out


def likelihoods(lm: LanguageModel, pairs: list[tuple[str, str]], candidates: dict[str, list[list[str]]],
                cfg: GenerationConfig | None = None, on_event: OnEvent | None = None) -> dict[str, list[list[float]]]:
    """Each candidate's share of the likelihood of all of a question's candidates as the variant's reply to the QA
    prompt (the candidate and the end of its turn, as SFT trained it; "" = "no answer"): {variant: [[share per
    candidate] per pair]}. One teacher-forced forward pass per candidate, rows of several variants in one batch.
    on_event: a done event per candidate (stage "rank", no text), once its batch is scored."""
    import math

    from laffi.inference.prompts import NO_ANSWER, qa_prompt

    tok = lm.tokenizer
    rows = [(qa_prompt(tok, c, q), (cand or NO_ANSWER) + tok.eos_token, v, i)
            for v, per_pair in candidates.items() for i, ((c, q), cands) in enumerate(zip(pairs, per_pair))
            for cand in cands]
    size = cfg.batch_size if cfg and cfg.batch_size else 8
    share = cfg is None or cfg.share_prefixes
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p, _, _, _ in rows]
    replies = [tok(r, add_special_tokens=False)["input_ids"] for _, r, _, _ in rows]
    logps = [0.0] * len(rows)
    for chunk in reply_batches([len(r) for r in replies], size):
        for k, lp in zip(chunk, reply_logprobs(lm, [prompts[k] for k in chunk], [replies[k] for k in chunk],
                                               [rows[k][2] for k in chunk], share)):
            logps[k] = lp
        if on_event:
            for k in chunk:
                on_event(GenerationEvent("rank", rows[k][2], rows[k][3], "", done=True, total=len(rows)))
    out = {v: [[0.0] * len(c) for c in per_pair] for v, per_pair in candidates.items()}
    k = 0
    for v, per_pair in candidates.items():
        for i, cands in enumerate(per_pair):
            mine = logps[k:k + len(cands)]
            top = max(mine)
            z = sum(math.exp(x - top) for x in mine)
            out[v][i] = [math.exp(x - top) / z for x in mine]
            k += len(cands)
    return out


MIN_LENGTH_BATCH = 8  # rows: a batch split by reply length pays one more pass of ~30 small layers' overhead


def reply_batches(lengths: list[int], size: int) -> list[list[int]]:
    """Row indices in batches of at most `size`, in order. Rows that all fit in one batch (a room's candidates)
    are split once by reply length where that saves a quarter of the padded reply tokens and leaves both halves
    at least MIN_LENGTH_BATCH rows: a question's candidates are its own short span, the base model's sentence and
    "no answer", and one batch pads every short one to the longest sentence. Larger sets keep their order, which
    keeps a question's candidates together (they share its prompt's prefill)."""
    if len(lengths) > size:
        return [list(range(s, min(s + size, len(lengths)))) for s in range(0, len(lengths), size)]
    order = sorted(range(len(lengths)), key=lambda k: lengths[k])
    n, whole = len(order), len(order) * max(lengths, default=0)
    best, cut = whole, None
    for i in range(MIN_LENGTH_BATCH, n - MIN_LENGTH_BATCH + 1):
        padded = i * lengths[order[i - 1]] + (n - i) * lengths[order[-1]]
        if padded < best:
            best, cut = padded, i
    if cut is None or 4 * (whole - best) < whole:
        return [list(range(n))] if n else []
    return [sorted(order[:cut]), sorted(order[cut:])]


def reply_logprobs(lm: LanguageModel, prompts: list[list[int]], replies: list[list[int]], variants: list[str],
                   share: bool = True) -> list[float]:
    """log P(reply | prompt) under each row's variant, teacher-forced, in one forward pass. A prompt several rows
    start with (a question's candidates, a passage's questions) is read once (shared_prefix_inputs, replies never
    shared); only the logits of the reply positions are computed (the 49k-word output layer is most of the cost
    of a long prompt's logits)."""
    import torch

    from laffi.inference.prefix import mask_positions, reply_inputs, shared_prefix_inputs

    ids = [p + r for p, r in zip(prompts, replies)]
    enc = reply_inputs(lm, prompts, replies, variants) if share else None  # a room's questions, candidates each
    if enc is None and share:
        enc = shared_prefix_inputs(lm, ids, variants, own=[len(r) for r in replies])
    if enc is None:  # nothing shared: one left-padded batch
        enc = dict(lm.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(lm.device))
    cache = enc.get("past_key_values")
    new = enc["input_ids"][:, cache.get_seq_length():] if cache is not None else enc["input_ids"]
    mask = enc["attention_mask"]
    positions = mask_positions(mask)[:, -new.shape[1]:]  # as in each row's unpadded prompt
    keep = max(len(r) for r in replies) + 1  # rows end at the last column: a reply of n is the last n tokens
    with torch.inference_mode(), lm.rows(variants):
        logits = lm.model(input_ids=new, attention_mask=mask, position_ids=positions, past_key_values=cache,
                          use_cache=cache is not None, logits_to_keep=keep).logits[:, -keep:-1]
    # log P(token) = its logit - logsumexp over the vocabulary, at each reply position only: a batch pads its
    # short replies to the longest one, and a full log_softmax over those 49k-wide rows was a fifth of the call
    at = [(k, c) for k, r in enumerate(replies) for c in range(keep - 1 - len(r), keep - 1)]
    rows = torch.tensor([k for k, _ in at], dtype=torch.long, device=logits.device)
    cols = torch.tensor([c for _, c in at], dtype=torch.long, device=logits.device)
    picked = logits[rows, cols].float()
    targets = new[:, 1 - keep:][rows, cols]  # the token each of those positions predicts
    logprobs = picked.gather(-1, targets[:, None])[:, 0] - torch.logsumexp(picked, dim=-1)
    sums = torch.zeros(len(replies), dtype=logprobs.dtype, device=logprobs.device).index_add_(0, rows, logprobs)
    return [float(x) for x in sums]


def verdict_na_prob(p_no_answer: float, p_best: float, how: str) -> float:
    """A chooser's no-answer probability from its candidates' scores (laffi.inference.answerability.NA_PROB_KINDS)."""
    if how == "rank":  # the share of the likelihood that "no answer" has
        return p_no_answer
    if how == "contrast":
        total = p_no_answer + p_best
        return 0.5 if total <= 0 else p_no_answer / total
    return 1.0 - p_best


def self_feedback(lm: LanguageModel, pairs: list[tuple[str, str]], drafts: dict[str, list[Answer]],
                  cfg: GenerationConfig | None = None, on_event: OnEvent | None = None) -> dict[str, list[Feedback]]:
    """Each variant predicts feedback on the drafts it is given (one per pair), all in mixed batches.
    on_event gets its events (stage "feedback", index: the pair's)."""
    cfg = cfg or GenerationConfig(max_new_tokens=FEEDBACK_MAX_NEW_TOKENS)
    rows = [Row(feedback_prompt(lm.tokenizer, c, q, drafts[v][i].text), v, i, "feedback")
            for i, (c, q) in enumerate(pairs) for v in drafts]
    texts = generate_batched(lm, rows, cfg, on_event)
    out: dict[str, list[Feedback]] = {v: [] for v in drafts}
    for row, text in zip(rows, texts):  # pair by pair: each variant's list in pair order
        text = first_line(text)
        verdict, revised = parse_feedback(text)
        out[row.variant].append(Feedback(text=text, verdict=verdict, revised=revised is not None,
                                         revised_answer=drafts[row.variant][row.index].text if revised is None
                                         else revised))
    return out


def answer_paths(lm: LanguageModel, variants: list[str], paths: dict[str, AnswerPath] | None = None) -> dict[str, AnswerPath]:
    """Each variant's AnswerPath: the one given, else its adapter folder's (base: direct)."""
    return {v: (paths or {}).get(v) or read_answer_path(lm.adapters.get(v)) for v in variants}


def drafters(variants: list[str], paths: dict[str, AnswerPath], feedback: bool) -> list[str]:
    """Variants whose direct answers are needed: all of them, plus the base model where someone drafts with it."""
    by_base = [v for v in variants if (feedback or paths[v].kind != "direct") and paths[v].draft_by == "base"]
    return list(dict.fromkeys([*variants, *(BASE_VARIANT for _ in by_base)]))


def answer_all(lm: LanguageModel, pairs: list[tuple[str, str]], variants: list[str],
               cfg: GenerationConfig | None = None, feedback: bool = False,
               paths: dict[str, AnswerPath] | None = None, on_event: OnEvent | None = None,
               direct: dict[str, list[Answer]] | None = None) -> dict[str, list[Result]]:
    """Every variant's answer to every (context, question) pair by its own AnswerPath, in stages: all direct
    answers (plus the base model's where a variant drafts with it; `direct` may bring them already made), the
    verdicts of verify-path variants on their candidates, then all feedback - for the variants whose path needs
    it and, with feedback=True, every variant (self-feedback on its own answer). on_event gets every stage's
    events (stage "answer", "verdict", "rank", "feedback"; index: the pair's), each with the whole call's total:
    its done events count the rows generated over the stages."""
    cfg = cfg or GenerationConfig()
    paths = answer_paths(lm, variants, paths)
    if not generator_of(lm).measures_first_token:  # a remote server measures no token probabilities
        paths = {v: AnswerPath(draft_by=p.draft_by) if p.kind in CHOOSERS else p for v, p in paths.items()}
    cals = calibrations(lm, variants)
    verifying = [v for v in variants if paths[v].kind in CHOOSERS]
    judged = [v for v in variants if feedback or paths[v].kind == "feedback"]
    needed = [v for v in drafters(variants, paths, feedback) if v not in (direct or {})]
    n_cands = sum(2 + (paths[v].draft_by == "base") for v in verifying)  # at most: own, base, "no answer"
    on_event = with_total(on_event, len(pairs) * (len(needed) + len(judged) + n_cands))
    direct = {**(direct or {}), **(answer_questions(lm, pairs, needed, cfg, on_event) if needed else {})}
    chosen: dict[str, list[tuple[str, float, list[dict]]]] = {}
    if verifying:
        scores = {}
        for kind, score in (("verify", verify), ("rank", likelihoods)):
            mine = {v: [_candidates(direct, v, i, paths[v]) for i in range(len(pairs))] for v in verifying
                    if paths[v].kind == kind}
            if mine:
                scores.update({v: (mine[v], s) for v, s in score(lm, pairs, mine, cfg, on_event).items()})
        for v in verifying:
            how = "rank" if paths[v].kind == "rank" else (
                cals[v].na_prob if cals[v] and cals[v].na_prob not in ("p_abstain", "rank") else "span")
            chosen[v] = [_choose(c, s, how) for c, s in zip(*scores[v])]
    drafts = {v: (direct[BASE_VARIANT if paths[v].draft_by == "base" else v] if v not in chosen else
                  [Answer(text=span, raw=span, span=span) for span, _, _ in chosen[v]]) for v in judged}
    fb_cfg = GenerationConfig(max_new_tokens=FEEDBACK_MAX_NEW_TOKENS, batch_size=cfg.batch_size)
    fbs = self_feedback(lm, pairs, drafts, fb_cfg, on_event) if judged else {}
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
                threshold = cal.threshold if cal and (cal.na_prob == "rank") == (paths[v].kind == "rank") and \
                    cal.na_prob != "p_abstain" else None
                row.answer, row.span, row.na_prob, row.threshold, row.candidates = (
                    decide(span, na, threshold), span, na, threshold, listed)
                row.draft_by = "self" if fb else None
            rows.append(row)
        out[v] = rows
    return out


def _candidates(direct: dict[str, list[Answer]], v: str, i: int, path: AnswerPath) -> list[str]:
    """What a verify- or rank-path variant chooses among for pair i: its own best span, the base model's (draft_by 'base'), and
    "no answer" (last, ""); empty and repeated spans once."""
    spans = [direct[v][i].span or direct[v][i].text]
    if path.draft_by == "base" and BASE_VARIANT in direct:
        spans.append(direct[BASE_VARIANT][i].span or direct[BASE_VARIANT][i].text)
    return [*dict.fromkeys(s for s in spans if s and s.strip()), ""]


def candidates_na_prob(listed: list[dict], how: str) -> float:
    """A chooser's na_prob from its scored candidates ([{"answer", "score"}], "" = no answer): what answer_all
    shows and what calibrate_variants chooses a threshold on, from the same numbers."""
    spans = [c["score"] for c in listed if c["answer"]]
    if not spans:
        return 1.0
    return verdict_na_prob(next((c["score"] for c in listed if not c["answer"]), 0.0), max(spans), how)


def _choose(cands: list[str], p_correct: list[float], how: str) -> tuple[str, float, list[dict]]:
    """(best non-empty candidate, na_prob, the candidates with their scores) for one question."""
    listed = [{"answer": c, "score": p} for c, p in zip(cands, p_correct)]
    spans = [(p, c) for c, p in zip(cands, p_correct) if c]
    best = max(spans, key=lambda t: t[0])[1] if spans else ""
    return best, candidates_na_prob(listed, how), listed

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

from laffi.errors import LaffiError
from laffi.generation import Answer, GenerationConfig, answer_questions, generate_batched
from laffi.models import BASE_VARIANT
from laffi.prompts import feedback_prompt, first_line, parse_feedback

FEEDBACK_MAX_NEW_TOKENS = 96  # the reference feedback is ~40 tokens; 99 % of it fits in 81, with the answer at the end
PATH_FILE = "answer_path.json"  # in an adapter folder: that variant's AnswerPath


@dataclass(frozen=True)
class AnswerPath:
    """How a variant's shown answer is made."""

    kind: str = field(default="direct", metadata={"help": "'direct' (its reply to the QA prompt) or 'feedback' "
                                                          "(the answer its feedback on a draft names)."})
    draft_by: str = field(default="self", metadata={"help": "Who writes the draft it judges: 'self' (its own direct "
                                                            "answer) or 'base' (the base model's)."})

    def __post_init__(self):
        if self.kind not in ("direct", "feedback") or self.draft_by not in ("self", "base"):
            raise LaffiError(f"An answer path is kind 'direct' or 'feedback' with draft_by 'self' or 'base', not "
                             f"{self.kind!r}/{self.draft_by!r}.")

    def label(self) -> str:
        return "direct" if self.kind == "direct" else f"via feedback on the {self.draft_by} draft".replace(
            "self draft", "variant's own draft").replace("base draft", "base model's draft")


def read_answer_path(adapter_dir: str | Path | None) -> AnswerPath:
    """The path an adapter folder asks for; without answer_path.json: 'feedback' (base drafts) for adapters trained
    on feedback alone (their QA reply was never trained), else 'direct'."""
    if adapter_dir is None:
        return AnswerPath()
    folder = Path(adapter_dir)
    try:
        if (folder / PATH_FILE).is_file():
            return AnswerPath(**json.loads((folder / PATH_FILE).read_text()))
        method = json.loads((folder / "training_config.json").read_text())["train"]["method"]
    except (OSError, ValueError, KeyError, TypeError):
        return AnswerPath()
    return AnswerPath("feedback", "base") if method == "laffi" else AnswerPath()


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

    def fields(self) -> dict:
        out = {"answer": self.answer, "direct_answer": self.direct.text, "raw": self.direct.raw,
               "answer_path": self.path.label()}
        if self.feedback is not None:
            out.update(self.feedback.fields(), draft=self.draft, draft_by=self.draft_by)
        return out


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
    judged = [v for v in variants if feedback or paths[v].kind == "feedback"]
    return list(dict.fromkeys([*variants, *(BASE_VARIANT for v in judged if paths[v].draft_by == "base")]))


def answer_all(lm, pairs: list[tuple[str, str]], variants: list[str], cfg: GenerationConfig | None = None,
               feedback: bool = False, paths: dict[str, AnswerPath] | None = None, progress=None,
               direct: dict[str, list[Answer]] | None = None, on_text=None) -> dict[str, list[Result]]:
    """Every variant's answer to every (context, question) pair by its own AnswerPath, in two stages: all direct
    answers (plus the base model's where a variant drafts with it; `direct` may bring them already made), then all
    feedback - for the variants whose path needs it and, with feedback=True, every variant (self-feedback on its
    own answer). progress(done, total) counts generated rows over both stages; on_text(stage, variant, pair
    index, text so far) streams them (stage: "answer" or "feedback")."""
    cfg = cfg or GenerationConfig()
    paths = answer_paths(lm, variants, paths)
    judged = [v for v in variants if feedback or paths[v].kind == "feedback"]
    needed = [v for v in drafters(variants, paths, feedback) if v not in (direct or {})]
    total = len(pairs) * (len(needed) + len(judged))
    answer_stream = None if on_text is None else (lambda v, i, text: on_text("answer", v, i, text))
    direct = {**(direct or {}), **(answer_questions(lm, pairs, needed, cfg, progress and (
        lambda done, _: progress(done, total)), answer_stream) if needed else {})}
    drafts = {v: direct[BASE_VARIANT if paths[v].draft_by == "base" else v] for v in judged}
    offset = len(pairs) * len(needed)
    fb_cfg = GenerationConfig(max_new_tokens=FEEDBACK_MAX_NEW_TOKENS, batch_size=cfg.batch_size)
    feedback_stream = None if on_text is None else (lambda v, i, text: on_text("feedback", v, i, text))
    fbs = self_feedback(lm, pairs, drafts, fb_cfg, progress and (lambda done, _: progress(offset + done, total)),
                        feedback_stream) if judged else {}
    out = {}
    for v in variants:
        rows = []
        for i in range(len(pairs)):
            fb = fbs[v][i] if v in fbs else None
            shown = fb.revised_answer if paths[v].kind == "feedback" else direct[v][i].text
            rows.append(Result(answer=shown, direct=direct[v][i], path=paths[v],
                               draft=drafts[v][i].text if fb else None,
                               draft_by=paths[v].draft_by if fb else None, feedback=fb))
        out[v] = rows
    return out

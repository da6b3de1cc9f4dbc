"""Self-feedback at inference: each variant predicts the feedback on its own answer (the LaFFi training format),
and where that feedback says what the answer should be, it becomes the revised answer (self-revision).

Usage:
    answers = answer_questions(lm, pairs, variants)
    fb = self_feedback(lm, pairs, answers)          # {variant: [Feedback(text, verdict, revised_answer)]}
"""

from __future__ import annotations

from dataclasses import dataclass

from laffi.generation import Answer, GenerationConfig, generate_batched
from laffi.prompts import feedback_prompt, first_line, parse_feedback

FEEDBACK_MAX_NEW_TOKENS = 64


@dataclass
class Feedback:
    text: str  # the predicted feedback, one line
    verdict: str | None  # "correct" / "partly" / "incorrect" / None (feedback did not start with a verdict)
    revised_answer: str  # what the feedback says the answer should be, or the original answer if it does not say
    revised: bool  # True when the feedback named an answer

    def fields(self) -> dict:
        """What `ask --feedback` and the app add to a variant's result."""
        return {"feedback": self.text, "verdict": self.verdict, "revised_answer": self.revised_answer}


def self_feedback(lm, pairs: list[tuple[str, str]], answers: dict[str, list[Answer]],
                  cfg: GenerationConfig | None = None, progress=None) -> dict[str, list[Feedback]]:
    cfg = cfg or GenerationConfig(max_new_tokens=FEEDBACK_MAX_NEW_TOKENS)
    variants = list(answers)
    rows = [(feedback_prompt(lm.tokenizer, c, q, answers[v][i].text), v)
            for i, (c, q) in enumerate(pairs) for v in variants]
    texts = generate_batched(lm, rows, cfg, progress)
    out: dict[str, list[Feedback]] = {v: [] for v in variants}
    for k, text in enumerate(texts):
        v, i = variants[k % len(variants)], k // len(variants)
        text = first_line(text)
        verdict, revised = parse_feedback(text)
        out[v].append(Feedback(text=text, verdict=verdict,
                               revised_answer=answers[v][i].text if revised is None else revised,
                               revised=revised is not None))
    return out

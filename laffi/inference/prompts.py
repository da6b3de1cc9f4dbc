"""Every prompt laffi sends to a model, and how answers are read back out. Change prompts here and only here.

Usage:
    text = qa_prompt(tokenizer, context, question)        # chat-templated string, ends where the answer starts
    extract_answer("The Rhine.\\nIt flows ...")            # -> "The Rhine"
    extract_answer("No answer.")                          # -> ""  (SQuAD v2's "unanswerable")

The QA prompt asks for a short span copied from the passage, or the literal reply "no answer". The extraction
rule is deliberately simple and documented, because SQuAD scores depend on it: take the first non-empty line,
drop an "Answer:" prefix, surrounding quotes and a final full stop, and cut at a closing quote that no quote
opened (`1874" from the passage: "..."` -> `1874`); any "no answer"-style reply becomes "".
"""

from __future__ import annotations

import re

NO_ANSWER = "no answer"  # what the model is asked to say, and the SFT target, for unanswerable questions

QA_SYSTEM = (
    "You answer questions about a passage. Reply with the shortest exact phrase copied from the passage that "
    f"answers the question. If the passage does not contain the answer, reply: {NO_ANSWER}"
)


def qa_messages(context: str, question: str) -> list[dict]:
    return [
        {"role": "system", "content": QA_SYSTEM},
        {"role": "user", "content": f"Passage: {context.strip()}\n\nQuestion: {question.strip()}"},
    ]


def render(tokenizer, messages: list[dict], completion: str | None = None) -> str:
    """Chat-template the messages up to the assistant turn; with `completion`, include it and the end-of-turn."""
    if completion is None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = messages + [{"role": "assistant", "content": completion}]
    return tokenizer.apply_chat_template(full, tokenize=False)


def qa_prompt(tokenizer, context: str, question: str) -> str:
    return render(tokenizer, qa_messages(context, question))


# Replies that mean "the passage does not say". Short words must be the whole reply ("None"), longer phrases
# may start it ("There is no answer in the passage.").
_ABSTAIN_WHOLE = re.compile(r"^(none|n/?a|unknown|nothing|no|-)$", re.I)
_ABSTAIN_START = re.compile(
    r"^(no answer|unanswerable|not answerable|(it )?cannot be answered|can'?t be answered|there is no answer|"
    r"the (passage|text|context) does(n't| not) (say|mention|state|specify|contain|provide)|"
    r"not (mentioned|stated|given|specified|provided)|no (information|mention))\b",
    re.I,
)


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


# A double quote that closes nothing: the span before it has no quote and ends in a word (or . % ) ]), and text
# follows. Models quote the passage after their answer this way; an answer that quotes a title ("the "Iron Lady"")
# opens its quote first and is left alone.
_UNOPENED_QUOTE = re.compile(r'^([^"“”]*?[\w.%)\]])["”]\s*\S')


def extract_answer(generated: str) -> str:
    """The answer span from a model reply ("" = no answer), by the rule in this module's docstring."""
    line = first_line(generated)
    line = re.sub(r"^(the )?answer( is)?\s*[:\-]\s*", "", line, flags=re.I).strip()
    line = line.lstrip(" \t\"'`*“")
    cut = _UNOPENED_QUOTE.match(line)
    if cut:
        line = cut.group(1)
    line = line.strip(" \t\"'`*“”")
    if line.endswith(".") and not line.endswith(".."):
        line = line[:-1].rstrip()
    bare = line.rstrip(".!").strip()
    if not bare or _ABSTAIN_WHOLE.match(bare) or _ABSTAIN_START.match(bare):
        return ""
    return line


# --- LaFFi: feedback on an answer -------------------------------------------------------------------------------
# The LaFFi training format: input = passage + question + the model's own answer; target = an annotator's feedback.
# At inference the same prompt makes a variant predict the feedback on its own answer ("self-feedback").

FEEDBACK_SYSTEM = (
    "You review answers to questions about a passage. Start with Correct, Partly correct or Incorrect, say why "
    "using the passage, and end with what the answer should be."
)


def feedback_messages(context: str, question: str, answer: str) -> list[dict]:
    shown = answer.strip() or NO_ANSWER
    return [
        {"role": "system", "content": FEEDBACK_SYSTEM},
        {"role": "user", "content": f"Passage: {context.strip()}\n\nQuestion: {question.strip()}\n\nAnswer: {shown}"},
    ]


def feedback_prompt(tokenizer, context: str, question: str, answer: str) -> str:
    return render(tokenizer, feedback_messages(context, question, answer))


_VERDICT = re.compile(r"^\W*(partly correct|partially correct|correct|incorrect|wrong|right)\b", re.I)
_SHOULD_BE = re.compile(r"(?:the (?:correct |right )?answer should be|the right reply is)\s*:?\s*(.+?)\s*$", re.I)


def parse_feedback(feedback: str) -> tuple[str | None, str | None]:
    """(verdict, revised answer) from feedback text.

    verdict: "correct", "partly" or "incorrect" from the first words (None if it starts otherwise).
    revised: what the feedback says the answer should be ("" = no answer), from its last "the answer should be X"
    or "the right reply is: no answer"; None when the feedback does not say.
    """
    text = " ".join(feedback.split())
    m = _VERDICT.match(text)
    verdict = None
    if m:
        word = m.group(1).lower()
        verdict = "partly" if word.startswith("part") else "correct" if word in ("correct", "right") else "incorrect"
    revised = None
    tail = text.rsplit("so ", 1)[-1] if "so " in text else text
    m = _SHOULD_BE.search(tail) or _SHOULD_BE.search(text)
    if m:
        value = m.group(1).strip().strip("\"'“”`").rstrip(".").strip().strip("\"'“”`")
        revised = "" if not value or _ABSTAIN_START.match(value) or _ABSTAIN_WHOLE.match(value) else value
    return verdict, revised


_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n+")
_STOPWORDS = frozenset("a an and are as at be by did do does for from has have how in is it its of on or that the "
                       "this to was were what when where which who whom whose why with".split())


def fit_context(tokenizer, context: str, question: str, max_tokens: int) -> tuple[str, str | None]:
    """Cut a passage longer than max_tokens to the run of whole sentences around the one that best matches the
    question (most shared words, ignoring stop-words; the start of the passage when nothing matches).

    Returns (passage to use, notice for the user or None). Deliberate and visible: a model reading past its window
    fails, and a silent cut would hide why an answer is missing."""
    n_tokens = len(tokenizer(context, add_special_tokens=False)["input_ids"])
    if n_tokens <= max_tokens:
        return context, None
    sentences = [s for s in _SENTENCE_END.split(context.strip()) if s.strip()]
    wanted = {w for w in _WORD.findall(question.lower()) if w not in _STOPWORDS}
    overlap = [len(wanted & set(_WORD.findall(s.lower()))) for s in sentences]
    best = max(range(len(sentences)), key=lambda i: (overlap[i], -i))
    sizes = [len(tokenizer(s + " ", add_special_tokens=False)["input_ids"]) for s in sentences]
    lo = hi = best
    used = sizes[best]
    while True:  # grow one sentence at a time, alternately after and before, while it fits
        grown = False
        for side in (hi + 1, lo - 1):
            if 0 <= side < len(sentences) and not (lo <= side <= hi) and used + sizes[side] <= max_tokens:
                used += sizes[side]
                lo, hi = min(lo, side), max(hi, side)
                grown = True
        if not grown:
            break
    kept = " ".join(sentences[lo:hi + 1])
    if used > max_tokens:  # one sentence longer than the whole budget: keep its first max_tokens tokens
        ids = tokenizer(kept, add_special_tokens=False)["input_ids"][:max_tokens]
        kept = tokenizer.decode(ids)
    where = "the start" if overlap[best] == 0 else f"sentence {best + 1} (best match for the question)"
    notice = (f"The passage is {n_tokens:,} tokens; the model reads at most {max_tokens:,}, so it read sentences "
              f"{lo + 1}-{hi + 1} of {len(sentences)}, around {where}.")
    return kept, notice

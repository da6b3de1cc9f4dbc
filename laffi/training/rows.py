"""What each method learns from: prompt-completion rows in the exact inference format, and a held-out share.

Usage:
    rows = training_rows(records, "laffi", tokenizer)     # SFT: target = gold answer; LaFFi: target = feedback
    keep, held = heldout_split(rows, 32, seed=0)          # whole passages held out for an evaluation loss

Why one module: the trainer, the packing, the preflight check and the bench all build rows, and they must be the
rows the trainer trains on (laffi.training.trainer).
"""

from __future__ import annotations

from laffi.errors import LaffiError
from laffi.inference.prompts import NO_ANSWER, feedback_prompt, qa_prompt


def sft_target(answers) -> str:
    return answers[0] if answers else NO_ANSWER


def training_rows(records: list[dict], method: str, tokenizer) -> list[dict]:
    """Prompt-completion rows in the exact inference format; completion ends with the end-of-turn token."""
    if method == "laffi+sft":  # one SFT row per question, however many drafts it has feedback on
        questions = list({r["qid"]: r for r in records}.values())
        return training_rows(questions, "sft", tokenizer) + training_rows(records, "laffi", tokenizer)
    eos = tokenizer.eos_token
    rows = []
    for r in records:
        if method == "sft" and not r.get("gold_known", True):
            continue  # collected feedback that says an answer is wrong but not what is right: LaFFi only
        if method == "sft":
            prompt, target = qa_prompt(tokenizer, r["context"], r["question"]), sft_target(r.get("answers") or [])
        else:
            if not r.get("feedback"):
                raise LaffiError(f"Record {r.get('qid')} has no feedback; run `annotate` before LaFFi training.")
            prompt = feedback_prompt(tokenizer, r["context"], r["question"], r.get("prediction") or "")
            target = r["feedback"]
        rows.append({"prompt": prompt, "completion": target + eos, "qid": r["qid"], "title": r.get("title", ""),
                     "feedback_source": r.get("feedback_source", "gold") if method == "laffi" else "gold",
                     "draft_kind": r.get("draft_kind", "own") if method == "laffi" else "gold",
                     "feedback_row_id": r.get("feedback_row_id"),  # a row of the app's feedback store
                     "group": f"{method}\n{r['context']}",  # rows that share a prompt prefix (laffi.training.packing)
                     "passage": r["context"], "task": 0 if method == "sft" else 1})  # (laffi.training.task_loss)
    return rows


def heldout_split(rows: list[dict], n: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(rows to train on, rows held out): about n rows, at most a tenth of them, whole passages where there are
    several (a passage seen in training would flatter its held-out loss), single rows otherwise; none when there
    are fewer than 2 rows."""
    import random

    want = min(n, len(rows) // 10 or (1 if len(rows) >= 2 and n else 0))
    if want <= 0:
        return rows, []
    passage = lambda r: r["group"].split("\n", 1)[-1]  # noqa: E731  (the group is "<method>\n<passage>")
    sizes: dict[str, int] = {}
    for r in rows:
        sizes[passage(r)] = sizes.get(passage(r), 0) + 1
    contexts = list(sizes)
    rng = random.Random(seed)
    rng.shuffle(contexts)
    held, count = set(), 0
    for c in contexts:  # whole passages that fit in the share (never all of them: the share is below the whole)
        if count + sizes[c] <= want:
            held.add(c)
            count += sizes[c]
    if held:
        return [r for r in rows if passage(r) not in held], [r for r in rows if passage(r) in held]
    chosen = set(rng.sample(range(len(rows)), want))  # one passage, or passages larger than the share: rows
    return [r for i, r in enumerate(rows) if i not in chosen], [r for i, r in enumerate(rows) if i in chosen]

"""What every bench measurement shares: its configuration, the timing rule and the result record.

Usage:
    seconds = timed(fn, repeats=3)                  # median of 3 after a warm-up call
    result("evaluation", 4.2, ">= 3", True, questions=32)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from laffi.errors import LaffiError

PASSAGE = (  # our own text, ~200 tokens with the prompt template: the "side by side" probe size
    "The Halvard Observatory stands on a basalt ridge above the fishing town of Merrow. It was founded in 1911 by "
    "the astronomer Petra Lindqvist, who paid for the first telescope by selling her family's orchard. The "
    "observatory's great refractor, a 60-centimetre lens ground in Jena, was installed in 1923 and is still used "
    "on clear nights for public viewings. In 1958 a fire destroyed the library wing, but the instruments were "
    "saved by students who carried them down the ridge in the rain. Today the observatory belongs to the "
    "University of Merrow and runs a summer school for secondary-school pupils every July."
)
QUESTION = "Who founded the Halvard Observatory?"
# A room's questions on that passage (ours too): twenty participants, each with a question of their own, some of
# which the passage does not answer.
ROOM_QUESTIONS = (
    QUESTION, "When was the observatory founded?", "Where does the observatory stand?",
    "How did Lindqvist pay for the first telescope?", "How wide is the lens of the great refractor?",
    "Where was the lens ground?", "When was the great refractor installed?", "What destroyed the library wing?",
    "In which year did the fire happen?", "Who saved the instruments?", "Who owns the observatory today?",
    "When does the summer school take place?", "Who is the summer school for?", "What is the ridge made of?",
    "What is Merrow known for?", "Who was the first director of the observatory?",
    "How many telescopes does the observatory have?", "What did the students carry down the ridge?",
    "How much did the first telescope cost?", "Which university runs the observatory?")


@dataclass
class BenchConfig:
    """What the bench measures on, and how hard it tries."""

    base: str = field(default="embedded", metadata={"help": "Base model (as ModelConfig.base)."})
    adapters_dir: str = field(default="adapters", metadata={"help": "Adapters to load beside the base."})
    squad: str | None = field(default=None, metadata={"help": "SQuAD v2 file for the eval and quality parts "
                                                                   "(default: ../shared dev set when present)."})
    repeats: int = field(default=3, metadata={"help": "Timed repeats per measurement (median), after a warm-up."})
    new_tokens: int = field(default=32, metadata={"help": "Tokens generated per answer in the side-by-side test."})
    eval_questions: int = field(default=32, metadata={"help": "Questions timed at each eval batch size."})
    quality_questions: int = field(default=200, metadata={"help": "Validation questions (first in file order) the "
                                                                      "quality guard compares in both precisions "
                                                                      "(0 skips it)."})
    write_guard: bool = field(default=True, metadata={"help": "Write each variant's guard verdict beside it "
                                                              "(precision_guard.json), which the app and CLI honour."})
    train_steps: int = field(default=3, metadata={"help": "Optimiser steps timed per training mode."})
    app: bool = field(default=True, metadata={"help": "Also time `python app.py` from launch to first answer."})
    only: str | None = field(default=None, metadata={"help": "Comma-separated steps to run (e.g. 'quality,training'; "
                                                              "a step is named by its first row), default all."})

    def __post_init__(self):
        for name in ("repeats", "new_tokens", "eval_questions", "train_steps"):
            if getattr(self, name) < 1:
                raise LaffiError(f"BenchConfig.{name} must be at least 1, not {getattr(self, name)}.")
        if self.quality_questions < 0:
            raise LaffiError(f"BenchConfig.quality_questions must be 0 or more, not {self.quality_questions}.")


def timed(fn, repeats: int, before=None) -> float:
    """Median wall time of fn() over `repeats` calls, after one untimed warm-up call; before(), if given, runs
    untimed ahead of every call (cold(lm): each repeat reads its passages anew, as the first time did)."""
    fn()
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold(lm):
    """A `before` for timed: empties lm's prefix cache (laffi.inference.prefix_cache), so that repeating the same
    work does not time passages kept from the warm-up call instead of the work itself."""
    return lambda: lm.prefix_cache.forget() if lm.prefix_cache is not None else None


def result(name: str, value, target: str, met, unit: str = "x", **details) -> dict:
    return {"name": name, "value": None if value is None else round(value, 3), "unit": unit, "target": target,
            "met": met, **details}


def squad_path(cfg: BenchConfig) -> Path | None:
    """The SQuAD file the bench reads (--squad, or the shared dev set when present); None: our own passage."""
    from laffi.settings import DEFAULT_SQUAD

    path = Path(cfg.squad) if cfg.squad else DEFAULT_SQUAD
    if cfg.squad and not path.is_file():
        raise LaffiError(f"--squad: no file at {path}; pass a SQuAD v2 JSON file or leave it out.")
    return path if path.is_file() else None


def squad_sample(cfg: BenchConfig, split: str, n: int | None, seed: int | None = 0):
    """n questions of the fixed article split from the SQuAD file - a seeded random sample, or with seed=None the
    first n in file order (whole passages, as a full-split eval reads them; n None: all of them); else variants of
    our own passage."""
    from laffi.squad.data import QAExample, load_squad, sample_examples, select_articles

    path = squad_path(cfg)
    if path is not None:
        examples, _ = load_squad(str(path))
        try:
            examples, where = select_articles(examples, split), f"{path.name}, {split} articles"
        except LaffiError:  # another file: all of it
            where = f"{path.name}, all articles"
        if seed is None:
            return examples[:n], f"{where}, first {n} in file order"
        return sample_examples(examples, n, seed=seed), f"{where}, seeded sample of {n}"
    sentences = PASSAGE.split(". ")
    made = [QAExample(qid=f"own-{i}", title="own", context=". ".join(sentences[: 1 + i % len(sentences)]) + ".",
                      question=QUESTION, answers=("Petra Lindqvist",), answer_starts=(0,)) for i in range(n)]
    return made, "built-in passage"
